"""The shape of the code: no import cycles, a lazy public API, tasks that hold no state."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """module -> the ftkit modules it imports, at module level or inside functions."""
    files = {_module_name(p): p for p in (SRC / "ftkit").rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in files}
    for mod, path in files.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
                # `from pkg import submodule` imports the submodule; `from mod import name` the module
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            graph[mod] |= {t for t in targets if t in files and t != mod}
    return graph


def test_no_module_imports_one_that_imports_it_back():
    graph = import_graph()
    index, low, stack, on_stack, cycles, counter = {}, {}, [], set(), [], [0]

    def strongconnect(v):  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in graph:
        if v not in index:
            strongconnect(v)
    assert len(graph) > 30 and cycles == []


def test_layers_point_one_way():
    """Tasks never import the engine, the API or the CLI; the engine never imports the API or the CLI."""
    graph = import_graph()
    for mod, deps in graph.items():
        if mod.startswith("ftkit.tasks"):
            assert not {d for d in deps if d.startswith(("ftkit.engine", "ftkit.api", "ftkit.cli"))}, mod
        if mod.startswith("ftkit.engine"):
            assert not {d for d in deps if d.startswith(("ftkit.api", "ftkit.cli"))}, mod


def test_python_api_is_lazy_and_documented():
    code = ("import sys, ftkit; assert 'torch' not in sys.modules and 'ftkit.api' not in sys.modules; "
            "help(ftkit.finetune); assert 'torch' not in sys.modules; "
            "import inspect; p = inspect.signature(ftkit.finetune).parameters; "
            "assert {'task', 'recipe', 'train', 'learning_rate', 'overrides', 'resume'} <= set(p), p")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "Fine-tune a model" in r.stdout and "RunResult" in r.stdout


@pytest.mark.parametrize("name", ["ner", "classification", "relation", "qa", "translation"])
def test_tasks_are_stateless(name):
    """A task object holds its (frozen) options and nothing else; options cannot be changed in place."""
    from pydantic import ValidationError

    from ftkit.tasks import make_task

    task = make_task(name, {})
    assert set(vars(task)) == {"_options"}
    field = next(iter(type(task.options).model_fields))
    with pytest.raises(ValidationError):
        setattr(task.options, field, getattr(task.options, field))


def test_readme_architecture_map_names_every_module():
    """The README's module map matches the tree: every module is named there (tasks/<task>.py and the
    metrics/ modules as their groups), and every file it names exists."""
    import re

    readme = (SRC.parent / "README.md").read_text(encoding="utf-8")
    block = readme.split("### Architecture", 1)[1].split("```", 2)[1]
    missing = []
    for path in sorted((SRC / "ftkit").rglob("*.py")):
        rel = path.relative_to(SRC / "ftkit")
        if path.name in ("__init__.py", "__main__.py") and rel.parent.name != "tasks" or rel.parts[0] == "metrics":
            continue
        if rel.parts[0] == "tasks" and path.stem not in ("base", "__init__"):
            assert path.stem in block, path  # "one module per task: ner, classification, ..."
            continue
        if path.name not in block:
            missing.append(str(rel))
    assert not missing, f"modules missing from the README's architecture map: {missing}"
    for named in set(re.findall(r"(?<![\w.])([a-z_0-9]+\.py)\b", block)):
        assert list((SRC / "ftkit").rglob(named)), f"the README's map names {named}, which does not exist"
