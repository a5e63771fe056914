"""The task registry: one explicit table, one module per task.

Adding a task means writing ``ftkit/tasks/<name>.py`` with a :class:`~ftkit.tasks.base.Task`
subclass, adding one line here, and shipping a recipe. Modules are imported lazily.
"""

from __future__ import annotations

import importlib

from ftkit.errors import FtkitError

# task name -> "module:Class"
REGISTRY: dict[str, str] = {
    "ner": "ftkit.tasks.ner:NerTask",
    "relation": "ftkit.tasks.relation:RelationTask",
    "classification": "ftkit.tasks.classification:ClassificationTask",
    "qa": "ftkit.tasks.qa:QaTask",
    "translation": "ftkit.tasks.translation:TranslationTask",
}

# the recipe `ftkit finetune --task T` uses when no recipe is given
DEFAULT_RECIPES: dict[str, str] = {
    "ner": "ner-demo",
    "relation": "relation-demo",
    "classification": "classification-demo",
    "qa": "qa-demo",
    "translation": "translation-demo",
}


def task_names() -> list[str]:
    return sorted(REGISTRY)


def get_task_class(name: str):
    try:
        target = REGISTRY[name]
    except KeyError:
        raise FtkitError(f"unknown task '{name}'", hint=f"choose one of: {', '.join(task_names())}") from None
    module, _, cls = target.partition(":")
    return getattr(importlib.import_module(module), cls)
