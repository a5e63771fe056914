"""ftkit.startup: the libraries load with the cyclic garbage collector paused and are frozen once; the console
script collects once and freezes before the interpreter exits. Each case runs in its own interpreter (freezing
is per process, and the test process must keep its collector as it is)."""

import subprocess
import sys
import textwrap


def run_python(code: str) -> str:
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_loading_pauses_the_collector_freezes_once_and_later_garbage_is_still_collected():
    out = run_python("""
        import gc, weakref
        from ftkit import startup
        assert gc.isenabled() and gc.get_freeze_count() == 0
        with startup.loading():
            assert not gc.isenabled()
            import json, decimal  # what a command loads
        assert gc.isenabled()
        frozen = gc.get_freeze_count()
        assert frozen > 0
        with startup.loading():  # once per process: a second block neither pauses nor freezes
            assert gc.isenabled()
            garbage = [object() for _ in range(100)]
        assert gc.get_freeze_count() == frozen

        class Node:  # cyclic garbage made after the freeze is collected as before
            pass
        a, b = Node(), Node()
        a.other, b.other = b, a
        gone = weakref.ref(a)
        del a, b
        gc.collect()
        assert gone() is None
        print("ok")
    """)
    assert out.strip() == "ok"


def test_a_paused_block_that_raises_still_restores_the_collector():
    out = run_python("""
        import gc
        from ftkit import startup
        try:
            with startup.loading():
                raise ValueError("boom")
        except ValueError:
            pass
        print(gc.isenabled(), gc.get_freeze_count() > 0)
    """)
    assert out.split() == ["True", "True"]


def test_the_console_script_finalises_cyclic_garbage_then_freezes_before_exit(tmp_path):
    # finish() collects first: an object only a cycle keeps, whose finaliser writes a file, still writes it
    flag = tmp_path / "finalised.txt"
    out = run_python(f"""
        import atexit, gc
        from ftkit.cli import main

        class Holder:
            def __del__(self):
                open({str(flag)!r}, "w").write("done")
        h = Holder()
        h.me = h
        del h
        gc.disable()  # only finish() may collect it
        atexit.register(lambda: print("frozen", gc.get_freeze_count() > 0))
        main(["recipes"])
    """)
    assert "frozen True" in out
    assert flag.read_text() == "done"
