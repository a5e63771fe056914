"""Export a run's best model as a folder plain ``transformers`` loads, with a model card."""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ftkit.engine.run_folder import RECIPE_FILE, RUN_FILE, find_model_dir, no_space_error, task_of
from ftkit.errors import FtkitError


def _card(meta: dict[str, Any], model_meta: dict[str, Any], recipe: str, evals: dict[str, Any], task) -> str:
    labels = model_meta["labels"]
    # the loading class and pipeline are recorded per model (they may depend on the family)
    pipe = model_meta.get("pipeline_task", task.pipeline_task)
    auto_class = model_meta.get("auto_class", task.auto_class)
    lines = [
        "---",
        "library_name: transformers",
        f"pipeline_tag: {pipe}",
        "tags: [ftkit]",
        "---",
        f"# {task.name} model fine-tuned with ftkit",
        "",
        f"- **Task:** {task.name} (`{auto_class}`, pipeline tag `{pipe}`)",
        f"- **Base model:** `{model_meta.get('base_model')}` ({model_meta.get('model_type')}, family {model_meta.get('family')})",
    ]
    if labels:
        lines.append(f"- **Labels ({len(labels)}):** {', '.join(labels)}")
    lines += [
        f"- **Window:** {model_meta.get('max_length')} sub-tokens",
        "",
        "## Data",
    ]
    for split, summary in (meta.get("data") or {}).items():
        lines.append(f"- {split}: {json.dumps(summary)}")
    lines += ["", "## Evaluation"]
    if not evals:
        lines.append("No evaluation was run.")
    for split, m in evals.items():
        shown = ", ".join(f"{k} {v:.4f}" for k, v in m.items() if isinstance(v, float))
        lines.append(f"- {split} (`{m.get('data')}`): {shown}")
    lines += [
        "",
        "## Usage",
        *task.card_usage(model_meta),
        "or `ftkit predict PATH/TO/THIS/FOLDER --input FILE`.",
        "",
        "## Training recipe (resolved)",
        "```yaml",
        recipe.rstrip(),
        "```",
        "",
    ]
    return "\n".join(lines)


def export_run(run_dir: Path, output: Path, overwrite: bool = False) -> Path:
    mdir = find_model_dir(run_dir)
    if output.exists() and (not output.is_dir() or any(output.iterdir())) and not overwrite:
        raise FtkitError("export folder exists and is not empty", file=output, hint="pass --overwrite to replace it")
    task, _, model_meta = task_of(mdir)
    run_meta = {}
    if (run_dir / RUN_FILE).exists():
        run_meta = json.loads((run_dir / RUN_FILE).read_text(encoding="utf-8"))
    recipe = (run_dir / RECIPE_FILE).read_text(encoding="utf-8") if (run_dir / RECIPE_FILE).exists() else ""
    evals = {}
    for f in sorted(run_dir.glob("eval_*.json")):
        evals[f.stem[5:]] = json.loads(f.read_text(encoding="utf-8"))

    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}.tmp-"))
    try:
        for f in mdir.iterdir():
            if f.is_file():
                shutil.copy2(f, tmp / f.name)
        if recipe:
            (tmp / "recipe.yaml").write_text(recipe, encoding="utf-8")
        if evals:
            (tmp / "eval_results.json").write_text(json.dumps(evals, indent=2) + "\n", encoding="utf-8")
        (tmp / "README.md").write_text(_card(run_meta, model_meta, recipe, evals, task), encoding="utf-8")
        if output.exists():
            old = output.with_name(f".{output.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(output, old)
            os.replace(tmp, output)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, output)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            raise no_space_error(output, sum(f.stat().st_size for f in mdir.iterdir() if f.is_file())) from None
        raise
    return output
