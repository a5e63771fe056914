"""The task registry: the built-in tasks in one explicit table, plus plugins.

A plugin is any installed distribution that declares an entry point in the group ``ftkit.tasks``::

    [project.entry-points."ftkit.tasks"]
    my_task = "my_package.tasks:MyTask"

The entry point's name is the task name (``ftkit finetune --task my_task``); its value
names a :class:`~ftkit.tasks.base.Task` subclass. Nothing is imported until a task is used, so
listing the names (``--task`` help) stays instant. A plugin cannot replace a built-in task.
"""

from __future__ import annotations

import importlib
from functools import lru_cache

from ftkit.errors import FtkitError, from_validation_error

ENTRY_POINT_GROUP = "ftkit.tasks"

# task name -> "module:Class"
BUILTIN: dict[str, str] = {
    "ner": "ftkit.tasks.ner:NerTask",
    "relation": "ftkit.tasks.relation:RelationTask",
    "classification": "ftkit.tasks.classification:ClassificationTask",
    "qa": "ftkit.tasks.qa:QaTask",
    "translation": "ftkit.tasks.translation:TranslationTask",
}


@lru_cache(maxsize=1)
def plugins() -> dict[str, str]:
    """Installed plugin tasks: name -> "module:Class" (built-in names are never overridden)."""
    from importlib.metadata import entry_points

    found = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in BUILTIN:
            found.setdefault(ep.name, ep.value)
    return found


def registry() -> dict[str, str]:
    """Every known task: built-ins first, then plugins."""
    return {**BUILTIN, **plugins()}


def task_names() -> list[str]:
    return list(BUILTIN) + sorted(plugins())


def get_task_class(name: str):
    from ftkit.tasks.base import Task

    try:
        target = registry()[name]
    except KeyError:
        raise FtkitError(f"unknown task '{name}'", hint=f"choose one of: {', '.join(task_names())}") from None
    module, _, attr = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise FtkitError(f"task '{name}' cannot be loaded from '{target}': {e}",
                         hint="reinstall the package that provides it") from None
    if not (isinstance(cls, type) and issubclass(cls, Task)):
        raise FtkitError(f"task '{name}' ('{target}') is not a subclass of ftkit.tasks.base.Task")
    return cls


def make_task(name: str, options=None, source: str = "recipe"):
    """A task object from its name and options (a mapping is validated against the task's own model)."""
    cls = get_task_class(name)
    if options is None or isinstance(options, cls.Options):
        return cls(options)
    from pydantic import ValidationError

    try:
        return cls(cls.Options.model_validate(dict(options)))
    except ValidationError as e:
        raise from_validation_error(e, source, "task_options.", None,
                                    {"task_options": list(cls.Options.model_fields)}) from None
