"""``ftkit finetune --processes N``: N local workers started through accelerate's own launcher.

The launcher checks everything a user can get wrong *before* any worker starts -- the process count
against the devices, the accelerate config, the run folder, the data (read, validated and encoded
once, here) -- so a mistake is one line and exit status 2, never N copies of a traceback. It then runs
``accelerate launch`` in-process (accelerate's argument parser and launcher: torch's elastic agent,
gloo for CPU workers, NCCL for CUDA ones) with ``python -m ftkit finetune`` as the workers' program;
the workers map the prepared data instead of reading it again. A worker's failure or a signal ends
the launcher with the worker's exit status (143 after SIGTERM, with a complete checkpoint).

Accelerate configs shipped with ftkit live in ``recipes/accelerate/`` (``ftkit recipes`` lists them).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from ftkit.errors import FtkitError
from ftkit.log import log
from ftkit.recipes import builtin_dir

ACCELERATE_DIR = "accelerate"
#: distributed types that need accelerator devices (accelerate enables them only there)
_GPU_ONLY = {"FSDP": "FSDP", "DEEPSPEED": "DeepSpeed", "MEGATRON_LM": "Megatron-LM"}


def accelerate_configs() -> dict[str, Path]:
    """The accelerate config files shipped with ftkit, by name (``ddp``, ``fsdp``, ``deepspeed-zero2``...)."""
    d = builtin_dir() / ACCELERATE_DIR
    return {p.stem: p for p in sorted(d.glob("*.yaml"))} if d.is_dir() else {}


def find_accelerate_config(name_or_path: str) -> Path:
    known = accelerate_configs()
    if name_or_path in known:
        return known[name_or_path]
    p = Path(name_or_path)
    if not p.is_file():
        raise FtkitError("accelerate config not found", file=p,
                         hint=f"built-in configs: {', '.join(known)}; or pass a YAML file")
    return p


def read_accelerate_config(path: Path):
    """accelerate's own config class, loaded by accelerate's own loader; any problem is one line."""
    import yaml
    from accelerate.commands.config.config_args import load_config_from_file

    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        mark = getattr(e, "problem_mark", None)
        raise FtkitError(f"cannot read the accelerate config: {getattr(e, 'problem', None) or e}", file=path,
                         line=mark.line + 1 if mark is not None else None) from None
    if not isinstance(raw, dict) or "compute_environment" not in raw or "distributed_type" not in raw:
        raise FtkitError("not an accelerate config (it needs compute_environment and distributed_type)", file=path,
                         hint="write one with `accelerate config --config_file FILE`, or use a built-in one")
    try:
        return load_config_from_file(str(path))
    except (TypeError, ValueError, KeyError) as e:
        raise FtkitError(f"invalid accelerate config: {' '.join(str(e).split())[:200]}", file=path) from None


def cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def worker_device(processes: int, device: str, config_cpu: bool = False) -> str:
    """``"cpu"`` or ``"cuda"`` for ``processes`` workers, or one line saying why the devices do not allow them."""
    import torch

    if processes < 1:
        raise FtkitError(f"--processes must be at least 1, got {processes}")
    if device == "cpu" or config_cpu:
        return "cpu"  # an explicit CPU request: as many processes as asked
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if gpus:
        if processes > gpus:
            raise FtkitError(f"--processes {processes} needs {processes} CUDA devices, this machine has {gpus}",
                             hint=f"--processes {gpus}, or --device cpu to run {processes} CPU processes")
        return "cuda"
    if device == "cuda":
        raise FtkitError("--device cuda was asked for, but no CUDA device is available")
    if processes > cpu_cores():
        raise FtkitError(f"--processes {processes} on a machine without CUDA and with {cpu_cores()} CPU cores",
                         hint=f"--processes {cpu_cores()} or fewer, or --device cpu to run {processes} CPU processes "
                              "anyway")
    return "cpu"


def check_config(acfg, workers: str) -> None:
    kind = str(getattr(acfg.distributed_type, "value", acfg.distributed_type))
    if kind in _GPU_ONLY and workers == "cpu":
        raise FtkitError(
            f"the accelerate config asks for {_GPU_ONLY[kind]}, which needs CUDA devices: accelerate enables "
            f"{_GPU_ONLY[kind]} only on accelerators (on CPU it would silently train plain DDP)",
            hint="use --accelerate-config ddp on CPU")
    if kind == "DEEPSPEED":
        import importlib.util

        if importlib.util.find_spec("deepspeed") is None:
            raise FtkitError("the accelerate config uses DeepSpeed, which is not installed",
                             hint="pip install deepspeed (it builds against the installed torch)")


def launch(cfg, run_dir: Path, *, processes: int, accelerate_config: str | None = None, overwrite: bool = False,
           resume: bool = False, recipe_source: str = "recipe", allow_pickle: bool = False,
           trust_remote_code: bool = False) -> dict[str, Any]:
    """Check, prepare the data once, run ``processes`` workers; returns the run's run.json."""
    import tempfile

    from ftkit import timing
    from ftkit.config import dump_yaml
    from ftkit.engine.distributed import LAUNCHER_ENV
    from ftkit.engine.feature_cache import cache_dir
    from ftkit.engine.finetune import plan_run_dir, resume_accumulation
    from ftkit.engine.prepare import EXCHANGE_ENV, prepare, save
    from ftkit.engine.run_folder import CHECKPOINTS, RUN_FILE, last_complete_checkpoint, read_json
    from ftkit.engine.trainer import sigterm_exits
    from ftkit.tasks import make_task
    from ftkit.version import __version__

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise FtkitError("--processes inside a job that a launcher already started with several processes",
                         hint="drop --processes: torchrun/accelerate launch set the number of processes")
    from ftkit.engine.distributed import STREAMING_ONE_PROCESS

    if cfg.data.streaming and processes > 1:
        raise FtkitError(STREAMING_ONE_PROCESS, hint="drop --processes, or leave data.streaming off to train on N")
    config_path = find_accelerate_config(accelerate_config or "ddp")
    acfg = read_accelerate_config(config_path)
    workers = worker_device(processes, cfg.training.device, bool(getattr(acfg, "use_cpu", False)))
    check_config(acfg, workers)
    run_dir = Path(run_dir)
    task = make_task(cfg.task, cfg.task_options, recipe_source)
    done, resume, overwrite = plan_run_dir(cfg, run_dir, overwrite, resume)
    if done is not None:
        return done
    if resume and (ckpt := last_complete_checkpoint(run_dir / CHECKPOINTS)):
        resume_accumulation(ckpt, processes, cfg.training.batch_size, cfg.training.gradient_accumulation,
                            announce=False)

    with sigterm_exits():
        log(f"ftkit {__version__}: task {task.name}, model {cfg.model}; {processes} {workers.upper()} processes "
            f"started by accelerate ({config_path.name})")
        (cache_dir() / "prepared").mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(dir=cache_dir() / "prepared", prefix="launch-"))
        try:
            save(prepare(cfg, task, allow_pickle=allow_pickle, trust_remote_code=trust_remote_code), folder)
            argv = ["finetune", "--output", str(run_dir)]
            if resume:
                argv.append("--resume")
            else:
                (folder / "recipe.yaml").write_text(dump_yaml(cfg), encoding="utf-8")
                argv += ["--recipe", str(folder / "recipe.yaml")] + (["--overwrite"] if overwrite else [])
            argv += (["--allow-pickle"] if allow_pickle else []) + (["--trust-remote-code"] if trust_remote_code else [])
            env = {LAUNCHER_ENV: "ftkit", EXCHANGE_ENV: str(folder),
                   timing.TIMINGS_ENV: timing.clock().to_env(),  # the main worker continues this clock
                   # time for every worker to finish its step and save a checkpoint after SIGTERM
                   "TORCH_ELASTIC_SHUTDOWN_TIMEOUT": os.environ.get("TORCH_ELASTIC_SHUTDOWN_TIMEOUT", "600")}
            if workers == "cpu":
                env["ACCELERATE_USE_CPU"] = "true"
            _run_accelerate(config_path, acfg, processes, argv, env)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    return read_json(run_dir / RUN_FILE)


def _run_accelerate(config_path: Path, acfg, processes: int, argv: list[str], env: dict[str, str]) -> None:
    """``accelerate launch --config_file C --num_processes N -m ftkit ARGV`` through accelerate's own parser and
    launcher; a worker's failure ends here with its exit status (it has printed its one line)."""
    import logging

    from accelerate.commands.launch import launch_command, launch_command_parser
    from accelerate.utils import patch_environment
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    args = ["--config_file", str(config_path), "--num_processes", str(processes), "--num_machines", "1",
            "--main_process_port", "0"]
    kind = str(getattr(acfg.distributed_type, "value", acfg.distributed_type))
    if kind in ("NO", "MULTI_CPU") and processes > 1:
        args.append("--multi_gpu")  # accelerate's one-node multi-process launcher (torch elastic) for any device
    parsed = launch_command_parser().parse_args(args + ["-m", "ftkit", *argv])
    # torch's elastic agent reports a failed worker with a traceback-sized table: the worker said why already
    for name in ("torch.distributed.elastic", "torch.distributed.run", "torch.distributed.launcher"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        with patch_environment(**env):
            launch_command(parsed)
    except ChildFailedError as e:
        _, failure = e.get_first_failure()
        code = failure.exitcode
        raise SystemExit(128 - code if code < 0 else code) from None  # killed by a signal: 128 + its number
    except SignalException as e:
        raise SystemExit(128 + int(e.sigval)) from None
    except (ValueError, ImportError, ConnectionError) as e:  # accelerate's own checks of the launch
        raise FtkitError(f"accelerate launch: {' '.join(str(e).split())[:300]}", file=config_path) from None
