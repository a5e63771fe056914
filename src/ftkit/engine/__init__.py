"""The one training engine, in parts whose names say what they hold.

``run_folder``     the run folder's layout, metadata (run.json, ftkit.json, eval_<split>.json) and
                   atomic writes; checkpoints and the saved model
``splits``         reading every split a recipe names, the label set, the data summary and lint
``feature_cache``  ``task.encode`` with an on-disk cache keyed by data, tokenizer and options
``models``         loading a base checkpoint (resolving the task's Facts) or a trained model folder
``trainer``        the Trainer subclass, its exact-resume sampler, callbacks and TrainingArguments
``inference``      model outputs, decode and score of one split (``score_split``), eval and predict
``finetune``       the orchestration of a training run

Importing this package imports nothing heavy; each part imports torch/transformers when used.
"""
