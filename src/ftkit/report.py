"""``ftkit report RUN_OR_SWEEP... --output report.html``: one self-contained HTML page.

The page holds the comparison table (:mod:`ftkit.compare`), learning curves (training loss and the
validation metric over steps, one line per run), and for each run given (for a sweep: its best trial)
its scores, per-label precision/recall/F1, the confusion matrix and an error analysis read from
``predictions_<split>.jsonl`` (rows made by the task's ``prediction_rows``: the report knows no task).
For a sweep, each trial's validation score against each searched hyper-parameter.

Self-contained: no script, no network, no CDN. Plots are matplotlib SVGs embedded as ``<img>`` data URIs
(an image cannot run code or restyle the page). All text goes through Jinja2's autoescaping, so data
such as ``<script>`` shows as text.
"""

from __future__ import annotations

import base64
import io
import json
import os
import time
from pathlib import Path
from typing import Any, Sequence

from ftkit.compare import Comparison, RunRow, SweepInfo, compare
from ftkit.errors import FtkitError

#: mistakes listed per run
MAX_ERRORS = 15
#: characters of a long text (a QA context) shown around its highlighted spans
CONTEXT_CHARS = 240
TEMPLATE = "report.html.j2"


def write_report(paths: Sequence[str | Path], output: str | Path) -> Path:
    """Read the runs, render the page, write it atomically to ``output``; returns its path."""
    out = Path(output)
    if out.is_dir():
        raise FtkitError("--output is a folder; give the HTML file to write", file=out)
    html = render(compare(paths))  # every input is checked (and rendered) before anything is written
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(html, encoding="utf-8")
    os.replace(tmp, out)
    return out


def render(comp: Comparison) -> str:
    import jinja2

    from ftkit.version import __version__

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
                             autoescape=True, trim_blocks=True, lstrip_blocks=True,
                             undefined=jinja2.StrictUndefined)
    env.filters["num"] = _num
    header, cells = comp.table()
    focus = [r for r in comp.rows if r.sweep is None or r.best]
    context = {
        "version": __version__,
        "generated": time.strftime("%Y-%m-%d %H:%M"),
        "header": header,
        "rows": [{"cells": c, "best": r.best, "state": r.state} for r, c in zip(comp.rows, cells)],
        "curves": _learning_curves(comp.rows),
        "sweeps": [_sweep_section(s) for s in comp.sweeps],
        "runs": [_run_section(r) for r in focus],
    }
    return env.get_template(TEMPLATE).render(**context)


# ---------------------------------------------------------------------------
# plots


def _figure_uri(fig) -> str:
    """A matplotlib figure as an ``data:image/svg+xml;base64`` URI (and the figure freed)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    plt.close(fig)
    return "data:image/svg+xml;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.hashsalt"] = "ftkit"  # the same runs give the same page
    import matplotlib.pyplot as plt

    return plt


def _train_log(row: RunRow) -> list[dict[str, Any]]:
    path = row.path / "train_log.jsonl"
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut short by a kill
    return rows


def _learning_curves(rows: list[RunRow]) -> list[dict[str, str]]:
    """Training loss, and the validation metric, over steps: one line per run."""
    from ftkit.compare import display_names

    names = dict(zip((id(r) for r in rows), display_names([r.name for r in rows])))
    logs = [(r, _train_log(r)) for r in rows]
    logs = [(r, log) for r, log in logs if log]
    if not logs:
        return []
    plt = _pyplot()
    figures = []
    metrics = {r.metric for r, _ in logs}
    for title, key in (("training loss", lambda r: "loss"), ("validation " + "/".join(sorted(metrics)),
                                                             lambda r: f"eval_{r.metric}")):
        fig, ax = plt.subplots(figsize=(5.6, 3.5), dpi=100)
        drawn = 0
        for r, log in logs:
            points = [(x["step"], x[key(r)]) for x in log if isinstance(x.get(key(r)), (int, float))]
            if points:
                ax.plot(*zip(*points), "--" if r.state == "pruned" else "-", marker="o" if len(points) < 30 else None,
                        markersize=3, linewidth=2.2 if r.best else 1.2, label=_legend_name(names[id(r)], r))
                drawn += 1
        if not drawn:
            plt.close(fig)
            continue
        ax.set_xlabel("step")
        ax.set_ylabel(title)
        ax.grid(alpha=0.3)
        if drawn <= 12:
            ax.legend(fontsize=7, loc="best")
        fig.tight_layout()
        figures.append({"title": title, "uri": _figure_uri(fig)})
    return figures


def _legend_name(name: str, r: RunRow) -> str:
    name = name if len(name) <= 40 else "..." + name[-37:]
    return name + (" (pruned)" if r.state == "pruned" else "") + (" (best)" if r.best else "")


def _sweep_section(s: SweepInfo) -> dict[str, Any]:
    """Each trial's validation score against each searched hyper-parameter."""
    meta, metric = s.meta, s.meta["metric"]
    plots = []
    plt = _pyplot()
    trials = meta.get("trials", [])
    for key, spec in (meta.get("space") or {}).items():
        fig, ax = plt.subplots(figsize=(4.2, 3.2), dpi=100)
        for state, style in (("complete", dict(marker="o", color="tab:blue")),
                             ("pruned", dict(marker="x", color="tab:gray"))):
            pts = [(t["params"][key], _trial_score(t)) for t in trials
                   if t["state"] == state and key in t["params"] and _trial_score(t) is not None]
            if pts:
                xs, ys = zip(*pts)
                if "choice" in spec:
                    xs = [str(x) for x in xs]
                ax.scatter(xs, ys, label=state, linestyle="None", **style)
        best = next((t for t in trials if t["number"] == meta.get("best_trial")), None)
        if best is not None and key in best["params"]:
            x = str(best["params"][key]) if "choice" in spec else best["params"][key]
            ax.scatter([x], [best["value"]], marker="*", s=180, color="tab:orange", label="best", zorder=3)
        if spec.get("log"):
            from matplotlib.ticker import NullFormatter

            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())  # minor tick labels overlap on a short decade
        ax.set_xlabel(key)
        ax.set_ylabel(f"validation {metric}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        plots.append({"key": key, "uri": _figure_uri(fig)})
    states = [t["state"] for t in trials]
    return {
        "name": s.name, "metric": metric, "plots": plots, "complete": states.count("complete"),
        "pruned": states.count("pruned"), "requested": meta.get("trials_requested"),
        "best": meta.get("best_folder"), "best_value": meta.get("best_value"),
        "test": (meta.get("test") or {}).get(metric), "pruning": meta.get("pruning") or {},
        "sampler": meta.get("sampler"), "pruner": meta.get("pruner"),
    }


def _trial_score(t: dict[str, Any]) -> float | None:
    if t.get("value") is not None:
        return t["value"]
    values = list((t.get("intermediate") or {}).values())
    return values[-1] if values else None


# ---------------------------------------------------------------------------
# one run in detail


def _run_section(r: RunRow) -> dict[str, Any]:
    from ftkit.engine.run_folder import read_json
    from ftkit.tasks import get_task_class

    split = "test" if (r.path / "eval_test.json").exists() else "validation"
    evaluated = r.path / f"eval_{split}.json"
    scores = read_json(evaluated) if evaluated.exists() else {}
    section: dict[str, Any] = {
        "name": r.name, "task": r.task, "model": r.model, "split": split,
        "scores": _score_table(r.metrics),
        "per_label": _per_label(scores.get("per_label")),
        "confusion": None, "errors": None,
    }
    from ftkit.plot import confusion_figure

    fig = confusion_figure(scores, f"confusion matrix, {split} split") if scores else None
    if fig is not None:
        _pyplot()
        section["confusion"] = _figure_uri(fig)
    try:
        title = get_task_class(r.task).error_analysis
    except FtkitError:
        title = "mistakes"
    section["errors"] = _errors(r.path / f"predictions_{split}.jsonl", title)
    return section


def _score_table(metrics: dict[str, dict[str, float]]) -> dict[str, Any]:
    columns = list(dict.fromkeys(k for m in metrics.values() for k in m))
    return {"columns": columns, "rows": [(split, [m.get(c) for c in columns]) for split, m in metrics.items()]}


def _per_label(per_label: Any) -> dict[str, Any] | None:
    if not isinstance(per_label, dict) or not per_label:
        return None
    columns: list[str] = []
    for v in per_label.values():
        for k in v:
            if k not in columns:
                columns.append(k)
    return {"columns": columns, "rows": [(label, [v.get(c) for c in columns]) for label, v in per_label.items()]}


def _errors(path: Path, title: str) -> dict[str, Any] | None:
    if not path.exists():
        return None
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    wrong = sorted((r for r in rows if not r.get("correct")), key=lambda r: -float(r.get("severity", 0)))
    shown = wrong[:MAX_ERRORS]
    return {
        "title": title, "total": len(rows), "wrong": len(wrong),
        "has_gold": any(r.get("gold") not in (None, []) for r in shown),
        "has_predicted": any(r.get("predicted") not in (None, []) for r in shown),
        "sources": sorted({sp["source"] for r in shown for f in r.get("fields", []) for sp in f.get("spans", [])}),
        "rows": [{"index": r.get("index"), "note": r.get("note", ""), "gold": _listed(r.get("gold")),
                  "predicted": _listed(r.get("predicted")),
                  "fields": [highlight(f) for f in r.get("fields", [])]} for r in shown],
    }


def _listed(v: Any, most: int = 8) -> list[str]:
    if v is None:
        return []
    items = [str(x) for x in v] if isinstance(v, list) else [str(v)]
    return items if len(items) <= most else items[:most] + [f"... {len(items) - most} more"]


def highlight(field: dict[str, Any], context: int = CONTEXT_CHARS) -> dict[str, Any]:
    """A field's text cut into pieces at span boundaries: ``{"text", "classes", "title"}`` pieces and,
    where a span ends, a ``{"tag", "source"}`` label. Long texts keep ``context`` characters around the
    spans. The template escapes every piece."""
    text = str(field.get("text", ""))
    spans = [s for s in field.get("spans", []) if 0 <= s["start"] < s["end"] <= len(text)]
    lo, hi = 0, len(text)
    if len(text) > 2 * context + 100:
        if spans:
            lo = max(0, min(s["start"] for s in spans) - context)
            hi = min(len(text), max(s["end"] for s in spans) + context)
        else:
            hi = 2 * context
    cuts = sorted({lo, hi} | {p for s in spans for p in (s["start"], s["end"]) if lo <= p <= hi})
    pieces: list[dict[str, Any]] = []
    if lo > 0:
        pieces.append({"text": "… ", "classes": "", "title": ""})
    for a, b in zip(cuts, cuts[1:]):
        covering = [s for s in spans if s["start"] <= a and s["end"] >= b]
        classes = " ".join(sorted({s["source"] for s in covering}))
        title = "; ".join(f"{s['source']}: {s['label']}" for s in covering)
        pieces.append({"text": text[a:b], "classes": classes, "title": title})
        for s in sorted((s for s in spans if s["end"] == b), key=lambda s: s["source"]):
            pieces.append({"tag": s["label"], "source": s["source"]})
    if hi < len(text):
        pieces.append({"text": " …", "classes": "", "title": ""})
    return {"name": field.get("name", ""), "pieces": pieces}


def _num(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return "-" if v is None else str(v)
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 1000 else f"{v:.1f}"
    return str(v)
