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


def load_recipe(name_or_path: str) -> tuple[Path, dict[str, Any]]:
    from ftkit.config import load_yaml

    path = find_recipe(name_or_path)
    return path, load_yaml(path)
