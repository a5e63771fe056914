"""``ftkit sweep``: a resumable hyper-parameter search over recipe keys, on optuna.

    ftkit sweep --recipe R [finetune flags] --space SPACE.yaml --trials N --output SWEEP [--resume]

``SPACE.yaml`` names recipe keys and their ranges::

    training.learning_rate: {float: [1.0e-5, 1.0e-3], log: true}
    training.batch_size: {choice: [16, 32]}
    training.warmup_ratio: {float: [0, 0.2]}
    training.epochs: {int: [1, 4]}

The sweep folder::

    study.db        the optuna study (SQLite): a killed sweep continues with --resume
    sweep.json      recipe, space, every trial (state, params, validation score, where it was pruned),
                    the best trial, its test score, and the steps pruning saved
    recipe.yaml     the resolved base recipe; space.yaml  the space
    trial-000/ ...  one ordinary run folder per trial (checkpoints removed once the trial is over)
    best.yaml       the best trial's resolved recipe, re-runnable as is

TPE samples (``--sampler random`` for random search); a median pruner stops a trial whose validation
metric, at an evaluation, is below the median of the finished trials at the same step (``--pruner none``
turns it off; evaluate more than once per trial -- ``training.eval_strategy: steps`` -- for it to matter).
Trials are chosen on the validation split only; the test split is scored once, for the best trial, when
the sweep ends. Everything a user can get wrong is checked before the folder is written.
"""

from __future__ import annotations

import contextlib
import copy
import shutil
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from ftkit.errors import FtkitError
from ftkit.log import log

STUDY_DB = "study.db"
SWEEP_FILE = "sweep.json"
BASE_RECIPE = "recipe.yaml"
SPACE_FILE = "space.yaml"
BEST_RECIPE = "best.yaml"
LOCK_FILE = ".lock"
KINDS = ("float", "int", "choice")


def trial_folder(number: int) -> str:
    return f"trial-{number:03d}"


def is_sweep(path: str | Path) -> bool:
    return (Path(path) / SWEEP_FILE).is_file()


# ---------------------------------------------------------------------------
# the search space


@dataclass(frozen=True)
class Param:
    """One searched recipe key."""

    key: str
    kind: str  # float | int | choice
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple[Any, ...] = ()

    def distribution(self):
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.kind == "float":
            return FloatDistribution(self.low, self.high, log=self.log, step=self.step)
        if self.kind == "int":
            return IntDistribution(self.low, self.high, log=self.log, step=self.step or 1)
        return CategoricalDistribution(list(self.choices))

    def candidates(self) -> list[Any]:
        """The values that bound the range (every choice): each must make a valid recipe."""
        return list(self.choices) if self.kind == "choice" else [self.low, self.high]


def _schema_leaves(task: str) -> dict[str, Any]:
    """Every dotted recipe key a space may search, with the pydantic field that types it."""
    from pydantic import BaseModel

    from ftkit.config import RunConfig
    from ftkit.tasks import get_task_class

    leaves: dict[str, Any] = {}

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            ann = field.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                walk(ann, f"{prefix}{name}.")
            else:
                leaves[f"{prefix}{name}"] = field

    walk(RunConfig, "")
    leaves.pop("task", None)
    leaves.pop("task_options", None)
    walk(get_task_class(task).Options, "task_options.")
    return leaves


def _integer_field(field) -> bool:
    types = typing.get_args(field.annotation) or (field.annotation,)
    return int in types and float not in types


def read_space(path: str | Path, base_raw: dict[str, Any], source: str = "recipe") -> list[Param]:
    """Parse and check ``SPACE.yaml`` against the recipe schema (and the base recipe: every bound of a
    range, every choice, must make a valid recipe). One-line errors name the file and the key."""
    import yaml

    from ftkit.config import apply_override, validate

    where = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise FtkitError(f"cannot read the space file: {e.strerror or e}", file=where) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        problem = getattr(e, "problem", None) or "not valid YAML"
        raise FtkitError(f"invalid YAML: {problem}", file=where,
                         line=mark.line + 1 if mark is not None else None) from None
    if raw is None or raw == {}:
        raise FtkitError("the space file is empty", file=where,
                         hint="name recipe keys, e.g. `training.learning_rate: {float: [1.0e-5, 1.0e-3], log: true}`")
    if not isinstance(raw, dict):
        raise FtkitError(f"the space file must map recipe keys to ranges, got {type(raw).__name__}", file=where)
    leaves = _schema_leaves(base_raw["task"])
    params = []
    for key, spec in raw.items():
        key = str(key)

        def err(msg: str, hint: str | None = None, key: str = key) -> FtkitError:
            return FtkitError(f"{key}: {msg}", file=where, hint=hint)

        if key not in leaves:
            import difflib

            close = difflib.get_close_matches(key, list(leaves), n=1)
            raise err("not a recipe key" + (" (the task is fixed by the recipe)" if key == "task" else ""),
                      hint=f"did you mean '{close[0]}'?" if close else "keys look like training.learning_rate")
        if not isinstance(spec, dict):
            raise err(f"expected a range such as {{float: [low, high]}}, {{int: [low, high]}} or {{choice: [..]}}, "
                      f"got {spec!r}")
        kinds = [k for k in KINDS if k in spec]
        extra = set(spec) - set(KINDS) - {"log", "step"}
        if len(kinds) != 1 or extra:
            raise err("give exactly one of float, int, choice" + (f" (unknown: {', '.join(map(str, extra))})"
                                                                  if extra else ""))
        kind = kinds[0]
        values = spec[kind]
        log_scale = spec.get("log", False)
        step = spec.get("step")
        if not isinstance(log_scale, bool):
            raise err(f"log must be true or false, got {log_scale!r}")
        if kind == "choice":
            if not isinstance(values, list) or not values:
                raise err("choice needs a non-empty list of values")
            if log_scale or step is not None:
                raise err("log and step apply to float and int ranges, not to choice")
            param = Param(key, kind, choices=tuple(values))
        else:
            number = (int,) if kind == "int" else (int, float)
            if (not isinstance(values, list) or len(values) != 2
                    or not all(isinstance(v, number) and not isinstance(v, bool) for v in values)):
                raise err(f"{kind} needs [low, high] ({'integers' if kind == 'int' else 'numbers'}), got {values!r}")
            low, high = values
            if low > high:
                raise err(f"low {low} is greater than high {high}")
            if log_scale and low <= 0:
                raise err(f"a log range needs low > 0, got {low}")
            if log_scale and step is not None:
                raise err("log and step cannot be combined")
            if step is not None and (not isinstance(step, number) or isinstance(step, bool) or step <= 0):
                raise err(f"step must be a positive {'integer' if kind == 'int' else 'number'}, got {step!r}")
            if kind == "float" and _integer_field(leaves[key]):
                raise err("this key takes integers: use {int: [low, high]} or {choice: [..]}")
            cast = int if kind == "int" else float
            param = Param(key, kind, cast(low), cast(high), log_scale, cast(step) if step is not None else None)
        for value in param.candidates():
            trial_raw = copy.deepcopy(base_raw)
            apply_override(trial_raw, key, value)
            try:
                validate(trial_raw, source, {key: f"{where}: {key}={value!r}"})
            except FtkitError as e:
                raise FtkitError(e.message, hint=e.hint) from None
        params.append(param)
    return params


# ---------------------------------------------------------------------------
# pruning


def pruning_callback(trial, metric: str):
    """A ``TrainerCallback`` that reports each validation evaluation to the optuna trial and stops the
    trial (``optuna.TrialPruned``) when the pruner says so; finetune then runs the callbacks' clean-up."""
    import optuna
    from transformers import TrainerCallback

    class PruneOnValidation(TrainerCallback):
        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            value = (metrics or {}).get(f"eval_{metric}")
            if value is None:
                return
            trial.report(float(value), state.global_step)
            if trial.should_prune():
                trial.set_user_attr("pruned_at_step", int(state.global_step))
                trial.set_user_attr("max_steps", int(state.max_steps))
                log(f"  trial {trial.number} pruned at step {state.global_step}/{state.max_steps}: "
                    f"validation {metric} {value:.4f}")
                raise optuna.TrialPruned(f"validation {metric} {value:.4f} at step {state.global_step}")

    return PruneOnValidation()


# ---------------------------------------------------------------------------
# the sweep


@dataclass(frozen=True)
class SweepResult:
    sweep_dir: Path
    metric: str
    best_trial: int
    best_value: float
    #: the best trial's test scores (None without test data)
    test: dict[str, Any] | None
    #: what sweep.json holds
    meta: dict[str, Any]


def _first_difference(a: dict[str, Any], b: dict[str, Any]) -> str | None:
    from ftkit.config import flat_keys

    fa, fb = flat_keys(a), flat_keys(b)
    for key in sorted(set(fa) | set(fb)):
        if fa.get(key) != fb.get(key):
            return f"{key}: {fb.get(key)!r} here, {fa.get(key)!r} in the sweep"
    return None


@contextlib.contextmanager
def _locked(sweep_dir: Path):
    """One sweep process per folder: a second one (or a --resume while the first still runs) is refused."""
    import fcntl

    with open(sweep_dir / LOCK_FILE, "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FtkitError("another sweep is running in this folder", file=sweep_dir) from None
        yield


def sweep(task: str | None = None, *, recipe: str | None = None, space: str | Path | None = None,
          trials: int | None = None, output: str | Path, resume: bool = False, sampler: str = "tpe",
          pruner: str | Any = "median", startup_trials: int | None = None,
          overrides: Mapping[str, Any] | Sequence[str] = (), allow_pickle: bool = False,
          trust_remote_code: bool = False, _style: str = "python", **flags: Any) -> SweepResult:
    """Search the ``space`` over ``trials`` trials of the recipe (``recipe``/``task`` and finetune flags, as
    ``ftkit.finetune`` takes them) in ``output``. ``resume=True`` continues the sweep in ``output``: finished
    trials are kept, an interrupted one is run again; recipe and space default to the sweep's own.
    ``pruner`` is ``"median"``, ``"none"`` or an optuna pruner object."""
    from ftkit.api import resolve_config
    from ftkit.engine.run_folder import read_json
    from ftkit.recipes import load_yaml

    out = Path(output)
    cli = _style == "cli"
    if sampler not in ("tpe", "random"):
        raise FtkitError(f"{'--sampler' if cli else 'sampler='} must be tpe or random, got '{sampler}'")
    if isinstance(pruner, str) and pruner not in ("median", "none"):
        raise FtkitError(f"{'--pruner' if cli else 'pruner='} must be median or none, got '{pruner}'")
    if trials is not None and trials < 1:
        raise FtkitError(f"{'--trials' if cli else 'trials='} must be at least 1, got {trials}")
    if startup_trials is not None and startup_trials < 0:
        raise FtkitError(f"{'--startup-trials' if cli else 'startup_trials='} must be 0 or more, got {startup_trials}")

    existing = out.exists() and any(out.iterdir())
    stored: dict[str, Any] | None = None
    if existing:
        if not resume:
            raise FtkitError("output folder exists and is not empty", file=out,
                             hint="pass --resume to continue the sweep in it, or choose another --output")
        if not is_sweep(out):
            raise FtkitError("not a sweep folder (no sweep.json): cannot resume it", file=out)
        stored = read_json(out / SWEEP_FILE)

    given_recipe = recipe is not None or task is not None or any(v is not None for v in flags.values()) or overrides
    if stored is not None and not given_recipe:
        base = _validated(load_yaml(out / BASE_RECIPE), str(out / BASE_RECIPE))
        source = str(out / BASE_RECIPE)
    else:
        base, source = resolve_config(task, recipe=recipe, overrides=overrides, _style=_style, **flags)
    base_raw = base.model_dump(mode="json")
    if stored is not None:
        # the stored recipe with today's defaults for keys it predates: only real differences refuse the resume
        diff = _first_difference(_validated(stored["recipe"], str(out / SWEEP_FILE)).model_dump(mode="json"),
                                 base_raw)
        if diff:
            raise FtkitError(f"this sweep folder belongs to a different recipe ({diff}); resume refused", file=out,
                             hint="resume with the sweep's own recipe (omit --recipe and flags) or use another --output")
    if space is None:
        if stored is None:
            raise FtkitError("no search space", hint="pass --space SPACE.yaml" if cli else "pass space=")
        space_path = out / SPACE_FILE
    else:
        space_path = Path(space)
    params = read_space(space_path, base_raw, source)
    space_raw = load_yaml(space_path)
    if stored is not None and space is not None and space_raw != stored["space"]:
        raise FtkitError("this sweep folder was searched over another space; resume refused", file=out,
                         hint="resume with the sweep's own space (omit --space) or use another --output")
    if trials is None:
        if stored is None:
            raise FtkitError("how many trials?", hint="pass --trials N" if cli else "pass trials=")
        trials = int(stored["trials_requested"])

    from ftkit.tasks import make_task

    task_obj = make_task(base.task, base.task_options, source)
    metric = task_obj.best_metric
    if not (base.data.validation or base.data.validation_fraction):
        raise FtkitError("a sweep chooses trials on the validation split, and the recipe has none",
                         hint="pass --validation FILE or --validation-fraction 0.1")
    if base.training.eval_strategy == "no":
        raise FtkitError("a sweep needs validation scores: training.eval_strategy is 'no'",
                         hint="use --set training.eval_strategy=steps --set training.eval_steps=N")
    from ftkit.engine.tracking import check_trackers

    check_trackers(base.training.report_to)

    # Everything the user could get wrong has been checked: the sweep folder is written from here on.
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        with _locked(out):
            return _run(out, base, base_raw, params, space_raw, trials, metric, sampler, pruner, startup_trials,
                        stored, allow_pickle, trust_remote_code)
    except FtkitError:
        # a sweep that failed before any trial finished (bad data, a model that does not load) leaves nothing
        if created and not any(out.glob("trial-*/run.json")):
            shutil.rmtree(out, ignore_errors=True)
        raise


def _validated(raw: dict[str, Any], source: str):
    from ftkit.config import validate

    return validate(raw, source)


def _run(out: Path, base, base_raw, params: list[Param], space_raw, trials: int, metric: str, sampler_name: str,
         pruner_spec, startup_trials, stored, allow_pickle: bool, trust_remote_code: bool) -> SweepResult:
    import optuna
    import yaml
    from optuna.trial import TrialState

    from ftkit.config import apply_override, dump_yaml, validate
    from ftkit.engine.finetune import finetune
    from ftkit.version import __version__

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    startup = startup_trials if startup_trials is not None else max(2, trials // 4)
    if sampler_name == "tpe":
        sampler = optuna.samplers.TPESampler(seed=base.training.seed, n_startup_trials=startup)
    else:
        sampler = optuna.samplers.RandomSampler(seed=base.training.seed)
    if pruner_spec == "median":
        pruner = optuna.pruners.MedianPruner(n_startup_trials=startup)
    elif pruner_spec == "none":
        pruner = optuna.pruners.NopPruner()
    else:
        pruner = pruner_spec
    storage = f"sqlite:///{(out / STUDY_DB).resolve()}"
    study = optuna.create_study(storage=storage, sampler=sampler, pruner=pruner, study_name="ftkit-sweep",
                                direction="maximize", load_if_exists=True)
    if stored is None:
        (out / BASE_RECIPE).write_text(dump_yaml(base), encoding="utf-8")
        (out / SPACE_FILE).write_text(yaml.safe_dump(space_raw, sort_keys=False, allow_unicode=True),
                                      encoding="utf-8")
    meta: dict[str, Any] = {
        "ftkit_version": __version__, "task": base.task, "metric": metric, "direction": "maximize",
        "trials_requested": trials, "sampler": sampler_name, "startup_trials": startup,
        "pruner": pruner_spec if isinstance(pruner_spec, str) else type(pruner_spec).__name__,
        "recipe": base_raw, "space": space_raw,
    }
    if stored is not None and stored.get("test") is not None:
        meta["test"], meta["test_trial"] = stored["test"], stored.get("test_trial")

    # an interrupted trial (the process was killed) is run again, with the same parameters
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(t.number, state=TrialState.FAIL)
        study.enqueue_trial(t.params, user_attrs={"rerun_of": t.number})
        shutil.rmtree(out / trial_folder(t.number), ignore_errors=True)
        log(f"trial {t.number} was interrupted: it runs again with the same parameters")

    distributions = {p.key: p.distribution() for p in params}
    finished = (TrialState.COMPLETE, TrialState.PRUNED)
    _write_meta(out, study, meta)
    while len(study.get_trials(deepcopy=False, states=finished)) < trials:
        trial = study.ask(distributions)
        folder = out / trial_folder(trial.number)
        trial.set_user_attr("folder", folder.name)
        raw = copy.deepcopy(base_raw)
        for key, value in trial.params.items():
            apply_override(raw, key, value)
        cfg = validate(raw, f"trial {trial.number}")
        shown = ", ".join(f"{k}={_short(v)}" for k, v in trial.params.items())
        done = len(study.get_trials(deepcopy=False, states=finished))
        log(f"trial {trial.number} ({done + 1}/{trials}): {shown}")
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()  # made here, so finetune keeps it (train log, recipe) when the trial is pruned
        try:
            run = finetune(cfg, folder, resume=False, recipe_source=f"trial {trial.number}",
                           allow_pickle=allow_pickle, trust_remote_code=trust_remote_code,
                           callbacks=[pruning_callback(trial, metric)], score_test=False)
        except optuna.TrialPruned:
            study.tell(trial, state=TrialState.PRUNED)
        except (KeyboardInterrupt, SystemExit):
            # the trial stays RUNNING in the study: --resume runs it again from its start
            log(f"sweep interrupted in trial {trial.number}; continue with:\n  ftkit sweep --output {out} --resume")
            raise
        except Exception:
            study.tell(trial, state=TrialState.FAIL)
            _write_meta(out, study, meta)
            raise
        else:
            value = run["metrics"]["validation"][metric]
            study.tell(trial, float(value))
            log(f"  trial {trial.number}: validation {metric} {value:.4f}")
        finally:
            shutil.rmtree(folder / "checkpoints", ignore_errors=True)  # a finished trial is never resumed
        _write_meta(out, study, meta)

    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        raise FtkitError("no trial ran to the end (every trial was pruned)", file=out,
                         hint="use --pruner none or more --startup-trials")
    best = study.best_trial
    best_dir = out / trial_folder(best.number)
    shutil.copyfile(best_dir / BASE_RECIPE, out / BEST_RECIPE)
    log(f"best: trial {best.number}, validation {metric} {best.value:.4f} ({best_dir})")
    if base.data.test and meta.get("test_trial") != best.number:
        from ftkit.api import evaluate

        # the only test score of the sweep: the best trial's, after every trial is over
        result = evaluate(best_dir, "test", allow_pickle=allow_pickle)
        meta["test"], meta["test_trial"] = result.metrics, best.number
        log(f"  test {metric} {result.metrics.get(metric, float('nan')):.4f}")
    meta = _write_meta(out, study, meta)
    return SweepResult(sweep_dir=out, metric=metric, best_trial=best.number, best_value=float(best.value),
                       test=meta.get("test"), meta=meta)


def _short(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def _write_meta(out: Path, study, meta: dict[str, Any]) -> dict[str, Any]:
    """sweep.json from the study: every trial, the best one, and the steps pruning saved."""
    from optuna.trial import TrialState

    from ftkit.engine.run_folder import read_json, write_json

    rows, step_times, pruned = [], [], []
    for t in study.get_trials(deepcopy=False):
        if t.state not in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING):
            continue
        folder = t.user_attrs.get("folder", trial_folder(t.number))
        row = {"number": t.number, "folder": folder, "state": t.state.name.lower(), "params": t.params,
               "value": t.value, "intermediate": {str(k): v for k, v in sorted(t.intermediate_values.items())}}
        if "rerun_of" in t.user_attrs:
            row["rerun_of"] = t.user_attrs["rerun_of"]
        run_file = out / folder / "run.json"
        if t.state == TrialState.COMPLETE and run_file.exists():
            m = read_json(run_file)["metrics"]
            row["steps"], row["train_time_s"] = m.get("train_steps"), m.get("train_time_s")
            if m.get("train_steps") and m.get("train_time_s"):
                step_times.append(m["train_time_s"] / m["train_steps"])
        if t.state == TrialState.PRUNED:
            row["steps"] = t.user_attrs.get("pruned_at_step")
            row["max_steps"] = t.user_attrs.get("max_steps")
            if row["steps"] is not None and row["max_steps"]:
                pruned.append(row["max_steps"] - row["steps"])
        rows.append(row)
    meta["trials"] = rows
    completed = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    if completed:
        best = max(completed, key=lambda t: t.value)
        meta["best_trial"], meta["best_value"] = best.number, best.value
        meta["best_folder"] = best.user_attrs.get("folder", trial_folder(best.number))
    seconds = sum(step_times) / len(step_times) if step_times else None
    meta["pruning"] = {"pruned_trials": len(pruned), "steps_saved": sum(pruned),
                       "seconds_per_step": round(seconds, 4) if seconds else None,
                       "seconds_saved_estimate": round(sum(pruned) * seconds, 1) if seconds else None}
    write_json(out / SWEEP_FILE, meta)
    return meta
