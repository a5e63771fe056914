"""The training curve PNG: training loss and the dev metric over steps."""

from __future__ import annotations

import json
from pathlib import Path


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
    fig.tight_layout()
    tmp = out.with_name(out.stem + ".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(out)
    return True
