"""ftkit: fine-tune pretrained Hugging Face checkpoints from one command line -- or from Python.

    import ftkit
    run = ftkit.finetune(task="ner", train="train.conll", test="test.conll", output="runs/ner")
    ftkit.evaluate("runs/ner", split="test").metrics
    ftkit.export("runs/ner", "my-model")
    ftkit.predict("my-model", ["EU rejects German call to boycott British lamb ."])

Importing this package is cheap: the API functions (``ftkit.api``) load on first use, and heavy
libraries (torch, transformers, datasets) only inside the functions that need them.
"""

from ftkit.version import __version__

__all__ = ["__version__", "finetune", "evaluate", "predict", "export", "validate", "serve"]
_API = {"finetune", "evaluate", "predict", "export", "validate", "serve", "RunResult", "EvalResult"}


def __getattr__(name: str):
    if name in _API:
        import importlib

        return getattr(importlib.import_module("ftkit.api"), name)
    raise AttributeError(f"module 'ftkit' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | _API)
