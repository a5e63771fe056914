"""Built-in recipes and the resolution of recipe names, files and packaged paths."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ftkit.errors import FtkitError

PACKAGE_DIR = Path(__file__).resolve().parent
PACKAGED_PREFIX = "ftkit:"


def builtin_dir() -> Path:
    """``ftkit/recipes`` inside an installed wheel, ``recipes/`` in a source checkout."""
    inside = PACKAGE_DIR / "recipes"
    return inside if inside.is_dir() else PACKAGE_DIR.parent.parent / "recipes"


def builtin_recipes() -> dict[str, Path]:
    d = builtin_dir()
    return {p.stem: p for p in sorted(d.glob("*.yaml"))} if d.is_dir() else {}


def describe(path: Path) -> str:
    """First comment line of a recipe file: its one-line description."""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
    return ""


def find_recipe(name_or_path: str) -> Path:
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.is_file():
            raise FtkitError("recipe file not found", file=p)
        return p
    known = builtin_recipes()
    if name_or_path in known:
        return known[name_or_path]
    raise FtkitError(
        f"unknown recipe '{name_or_path}'",
        hint=f"built-in recipes: {', '.join(known) or 'none'}; or pass a .yaml file",
    )


def resolve_packaged(path: str) -> str:
    """``ftkit:samples/x`` -> absolute path of a file shipped inside the package."""
    if path.startswith(PACKAGED_PREFIX):
        return str(PACKAGE_DIR / path[len(PACKAGED_PREFIX):])
    return path


def load_yaml(path: Path) -> dict[str, Any]:
    """A recipe file as a mapping; every problem is one :class:`FtkitError` naming the file (and line)."""
    import yaml

    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise FtkitError(f"recipe is not valid UTF-8 ({e.reason})", file=path) from None
    except OSError as e:
        raise FtkitError(f"cannot read recipe: {e.strerror}", file=path) from None
    try:
        data = yaml.safe_load(text)  # safe loader: a recipe can never name Python objects
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(e, "problem", None) or str(e)
        raise FtkitError(f"invalid YAML: {problem}", file=path, line=line) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise FtkitError("a recipe must be a mapping of keys to values", file=path)
    return data


def load_recipe(name_or_path: str) -> tuple[Path, dict[str, Any]]:
    path = find_recipe(name_or_path)
    return path, load_yaml(path)
