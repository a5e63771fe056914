"""ftkit: fine-tune pretrained Hugging Face checkpoints from one command line.

Importing this package is cheap: heavy libraries (torch, transformers, datasets)
are imported only by the modules that need them.
"""

__version__ = "0.1.0"
