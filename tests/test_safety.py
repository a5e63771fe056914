"""Safe loading, secrets and offline behaviour."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
from conftest import SAMPLES


def _run(args, env_extra=None, **kw):
    env = dict(os.environ, HF_HUB_OFFLINE="1", **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "ftkit", *args], capture_output=True, text=True, env=env,
                          timeout=600, **kw)


@pytest.fixture()
def small_train(tmp_path):
    p = tmp_path / "train.txt"
    p.write_text("\n\n".join((SAMPLES / "train.txt").read_text().split("\n\n")[:24]) + "\n")
    return p


def _quick(model, train, out, *extra):
    return ["finetune", "--task", "ner", "--model", str(model), "--train", str(train), "--output", str(out),
            "--max-steps", "2", "--batch-size", "4", "--set", "data.validation=null", "--set", "data.test=null",
            *extra]


def test_pickle_only_checkpoint_is_refused_unless_allowed(tiny_models, tmp_path, small_train):
    import shutil

    import torch
    from safetensors.torch import load_file

    src = tiny_models("bert")
    pickled = tmp_path / "pickled"
    shutil.copytree(src, pickled)
    torch.save(load_file(str(pickled / "model.safetensors")), pickled / "pytorch_model.bin")
    (pickled / "model.safetensors").unlink()

    r = _run(_quick(pickled, small_train, tmp_path / "run"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "pytorch_model.bin" in r.stderr and "--allow-pickle" in r.stderr
    assert not (tmp_path / "run").exists()

    r = _run(_quick(pickled, small_train, tmp_path / "run", "--allow-pickle"))
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "run" / "model" / "model.safetensors").exists()


def test_remote_code_needs_trust(tiny_models, tmp_path, small_train):
    import shutil

    folder = tmp_path / "custom"
    shutil.copytree(tiny_models("bert"), folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["auto_map"] = {"AutoModel": "modeling_evil.EvilModel"}
    (folder / "config.json").write_text(json.dumps(cfg))
    r = _run(_quick(folder, small_train, tmp_path / "run"))
    assert r.returncode == 2 and "--trust-remote-code" in r.stderr and not (tmp_path / "run").exists()


def test_secrets_never_reach_run_dirs_or_exports(tiny_models, tmp_path, small_train):
    secret = "hf_SECRETtoken1234567890"
    env = {"HF_TOKEN": secret, "HUGGING_FACE_HUB_TOKEN": secret, "WANDB_API_KEY": secret}
    r = _run(_quick(tiny_models("bert"), small_train, tmp_path / "run"), env)
    assert r.returncode == 0, r.stderr[-2000:]
    r = _run(["export", str(tmp_path / "run"), "--output", str(tmp_path / "export")], env)
    assert r.returncode == 0
    for folder in (tmp_path / "run", tmp_path / "export"):
        for f in folder.rglob("*"):
            if f.is_file():
                assert secret.encode() not in f.read_bytes(), f
    assert secret not in r.stdout + r.stderr


SITECUSTOMIZE = textwrap.dedent('''
    import os, socket
    _log = os.environ["FTKIT_SOCKET_LOG"]

    def _blocked(kind):
        def guard(*args, **kwargs):
            with open(_log, "a") as f:
                f.write(f"{kind} {args[1:] if kind == 'connect' else args}\\n")
            raise OSError("network access blocked by the test")
        return guard

    _connect = socket.socket.connect

    def connect(self, address):
        if self.family == getattr(socket, "AF_UNIX", None):
            return _connect(self, address)
        return _blocked("connect")(self, address)

    socket.socket.connect = connect
    socket.socket.connect_ex = connect
    socket.getaddrinfo = _blocked("getaddrinfo")
    socket.create_connection = _blocked("create_connection")
''')


def test_offline_run_never_touches_the_network(tiny_models, tmp_path, small_train):
    """finetune -> eval -> export -> predict with sockets blocked; no connection is even attempted."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    log = tmp_path / "sockets.log"
    env = {"PYTHONPATH": f"{site}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "FTKIT_SOCKET_LOG": str(log)}
    run, export = tmp_path / "run", tmp_path / "export"
    cmds = [
        ["finetune", "--task", "ner", "--model", str(tiny_models("gpt2")), "--train", str(small_train),
         "--validation", str(small_train), "--test", str(small_train), "--output", str(run),
         "--max-steps", "3", "--batch-size", "4"],
        ["eval", str(run), "--split", "test", "--json"],
        ["export", str(run), "--output", str(export)],
        ["predict", str(export), "--input", "-"],
    ]
    for cmd in cmds:
        r = _run(cmd, env, input="Peter Blackburn visited Brussels .\n")
        assert r.returncode == 0, (cmd[0], r.stderr[-2000:])
    assert not log.exists(), log.read_text()
    # the guard really is active in those processes
    r = subprocess.run([sys.executable, "-c", "import socket; socket.create_connection(('example.com', 443))"],
                       env=dict(os.environ, **env), capture_output=True, text=True)
    assert r.returncode != 0 and log.exists()
