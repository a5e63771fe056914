"""The training curve PNG: training loss and the dev metric over steps."""

from __future__ import annotations

import json
from pathlib import Path


def _save(fig, out: Path) -> None:
    """Write the figure atomically (temp file, then rename) and free it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    tmp = out.with_name(out.stem + ".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(out)


def plot_training(log_path: Path, out: Path, metric: str = "f1") -> bool:
    if not log_path.exists():
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in log_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    loss = [(r["step"], r["loss"]) for r in rows if "loss" in r]
    dev = [(r["step"], r[f"eval_{metric}"]) for r in rows if f"eval_{metric}" in r]
    if not loss and not dev:
        return False
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    if loss:
        ax.plot(*zip(*loss), color="tab:blue", label="training loss")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss", color="tab:blue")
    if dev:
        ax2 = ax.twinx()
        ax2.plot(*zip(*dev), "o-", color="tab:orange", label=f"dev {metric}")
        ax2.set_ylabel(f"dev {metric}", color="tab:orange")
        # fractions (F1) on 0-1; metrics reported in percent (BLEU, chrF) on 0-100
        ax2.set_ylim(0, 100 if max(v for _, v in dev) > 1 else 1)
    ax.set_title("ftkit training")
    _save(fig, out)
    return True


def plot_confusion(metrics: dict, out: Path, title: str = "") -> bool:
    """Draw ``metrics["confusion_matrix"]`` as a PNG (see :func:`confusion_figure`). Returns False when
    there is no single-label matrix to draw (NER, QA, translation, multi-label)."""
    fig = confusion_figure(metrics, title)
    if fig is None:
        return False
    _save(fig, out)
    return True


def confusion_figure(metrics: dict, title: str = ""):
    """``metrics["confusion_matrix"]`` (rows: true, columns: predicted) as a matplotlib figure, or None when
    there is no single-label matrix; counts in the cells, colour by the row-normalised rate so rare
    classes stay readable."""
    cm = metrics.get("confusion_matrix")
    if not isinstance(cm, dict) or "matrix" not in cm:
        return None
    labels, matrix = list(cm["labels"]), cm["matrix"]
    n = len(labels)
    if n == 0 or len(matrix) != n or any(len(row) != n for row in matrix):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rates = [[c / max(1, sum(row)) for c in row] for row in matrix]
    size = min(16.0, 2.5 + 0.55 * n)
    fig, ax = plt.subplots(figsize=(size, size * 0.9), dpi=100)
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), labels, rotation=60 if n > 4 else 0, ha="right" if n > 4 else "center",
                  fontsize=8 if n > 10 else 10)
    ax.set_yticks(range(n), labels, fontsize=8 if n > 10 else 10)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(n):
        for j in range(n):
            if matrix[i][j]:
                ax.text(j, i, str(matrix[i][j]), ha="center", va="center", fontsize=7 if n > 10 else 10,
                        color="white" if rates[i][j] > 0.5 else "black")
    ax.set_title(title or "confusion matrix")
    fig.tight_layout()
    return fig
