"""Experiment tracking (``training.report_to``): the Trainer's own integrations, offline first.

- ``tensorboard``: transformers' ``TensorBoardCallback`` (train loss, learning rate, every eval metric at
  its step), pointed at ``RUN/tensorboard/``.
- ``mlflow``: transformers' ``MLflowCallback`` logs the same events as metrics. It lacks the recipe and the
  final scores, so ftkit opens the mlflow run itself around training (the integration then logs into it):
  the resolved recipe as params (dotted keys, ``training.learning_rate``), the final validation/test
  scores as ``validation_<metric>``/``test_<metric>``, and the run's end status. The store is
  ``MLFLOW_TRACKING_URI`` when set, else a SQLite store under ``RUN/mlflow/`` (mlflow 3 refuses the old
  file store). The run id is kept in ``RUN/mlflow_run.json``, so ``--resume`` continues the same run.
- ``wandb``, ``trackio``: the integrations as they are (optional extras ``ftkit[wandb]``, ``ftkit[trackio]``).

Nothing here is imported unless a tracker is asked for.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
from pathlib import Path
from typing import Any, Iterator

from ftkit.config import flat_keys
from ftkit.errors import FtkitError

TENSORBOARD_DIR = "tensorboard"
MLFLOW_DIR = "mlflow"
MLFLOW_RUN_FILE = "mlflow_run.json"

#: tracker -> (module it needs, how to install it)
_PACKAGES = {
    "tensorboard": ("tensorboard", "pip install tensorboard"),
    "mlflow": ("mlflow", "pip install 'ftkit[mlflow]'"),
    "wandb": ("wandb", "pip install 'ftkit[wandb]'"),
    "trackio": ("trackio", "pip install 'ftkit[trackio]'"),
}


def check_trackers(report_to: list[str]) -> None:
    """Every tracker asked for is installed; else one line naming the pip command (before any folder is made)."""
    for name in report_to:
        module, install = _PACKAGES[name]
        if importlib.util.find_spec(module) is None:
            raise FtkitError(f"--report-to {name} needs the '{module}' package, which is not installed",
                             hint=install)


def point_trackers(trainer, run_dir: Path) -> None:
    """Send the tensorboard integration's event files to ``RUN/tensorboard/`` (its default is a dated
    folder under the checkpoints) unless ``TENSORBOARD_LOGGING_DIR`` says otherwise."""
    if "tensorboard" not in (trainer.args.report_to or []) or os.environ.get("TENSORBOARD_LOGGING_DIR"):
        return
    from transformers.integrations import TensorBoardCallback

    for cb in trainer.callback_handler.callbacks:
        if isinstance(cb, TensorBoardCallback):
            cb.logging_dir = str(Path(run_dir) / TENSORBOARD_DIR)


def param_text(value: Any) -> str:
    """A recipe value as an mlflow param: strings as they are, everything else as JSON (``null``, ``[..]``)."""
    return value if isinstance(value, str) else json.dumps(value)


class _Tracking:
    """What finetune reports at the end (the final scores); a no-op without mlflow."""

    def __init__(self, mlflow=None):
        self.mlflow = mlflow

    def log_final(self, scores: dict[str, dict[str, Any]], step: int) -> None:
        if self.mlflow is None:
            return
        metrics = {f"{split}_{k}": float(v) for split, m in scores.items() for k, v in m.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if metrics:
            self.mlflow.log_metrics(metrics, step=step)


@contextlib.contextmanager
def tracking_run(cfg, run_dir: Path, resume: bool = False) -> Iterator[_Tracking]:
    """Around training: with mlflow asked for, the mlflow run the Trainer's integration logs into."""
    if "mlflow" not in cfg.training.report_to:
        yield _Tracking()
        return
    import mlflow
    from mlflow.tracking import MlflowClient

    run_dir = Path(run_dir)
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        store = run_dir / MLFLOW_DIR
        store.mkdir(parents=True, exist_ok=True)
        mlflow.set_tracking_uri(f"sqlite:///{(store / 'mlflow.db').resolve()}")
    uri = mlflow.get_tracking_uri()
    name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or "ftkit"
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        local = None if os.environ.get("MLFLOW_TRACKING_URI") else (run_dir / MLFLOW_DIR / "artifacts").resolve().as_uri()
        experiment_id = client.create_experiment(name, artifact_location=local)
    else:
        experiment_id = experiment.experiment_id
    saved = run_dir / MLFLOW_RUN_FILE
    run_id = None
    if resume and saved.exists():
        with contextlib.suppress(OSError, ValueError, KeyError):
            previous = json.loads(saved.read_text(encoding="utf-8"))
            run_id = previous["run_id"] if previous.get("tracking_uri") == uri else None
    run = mlflow.start_run(run_id=run_id, experiment_id=None if run_id else experiment_id, run_name=run_dir.name)
    saved.write_text(json.dumps({"tracking_uri": uri, "experiment": name, "run_id": run.info.run_id}) + "\n",
                     encoding="utf-8")
    status = "FAILED"
    try:
        params = {k: param_text(v)[:6000] for k, v in flat_keys(cfg.model_dump(mode="json")).items()}
        keys = sorted(params)
        for i in range(0, len(keys), 100):  # mlflow takes at most 100 params per call
            mlflow.log_params({k: params[k] for k in keys[i:i + 100]})
        yield _Tracking(mlflow)
        status = "FINISHED"
    except BaseException as e:
        # a pruned sweep trial or Ctrl-C ends the run as KILLED, an error as FAILED
        status = "FAILED" if isinstance(e, Exception) and type(e).__name__ != "TrialPruned" else "KILLED"
        raise
    finally:
        with contextlib.suppress(Exception):
            mlflow.flush_async_logging()
        mlflow.end_run(status=status)
