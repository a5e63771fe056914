"""How fast can `ftkit predict` be on this machine? The arithmetic floor of the MiniLM NER forward passes over
the 3,453 CoNLL-2003 test sentences, against the time the 5x target of bench/speed.py allows.

1. Runs `Predictor.predict` (batch 32, what `ftkit predict` runs) on the test sentences once and records the
   shape of every forward pass the model sees (hooks on the model; nothing else changes).
2. Counts the floating-point work of those passes: every `nn.Linear` (2 * rows * in * out) and the attention
   products (4 * inputs * heads * positions^2 * head size per layer).
3. Times the linear layers alone: `torch.nn.functional.linear` (MKL) on random tensors of exactly the shapes
   the passes used, best of 3 (no attention, no layer norm, no Python between them), the same through oneDNN
   with packed weights (what ftkit's prediction loop runs on a CPU: engine/cpu_linear.py), and the machine's
   fp32 matrix multiply rate on a large product.
4. Reads the pipeline's default-batch loop time from bench/results/speed.json (same machine) and the wall time
   a 5x speed-up over it allows the whole `ftkit predict` command.

    flock /tmp/ftkit-cpu.lock .venv/bin/python bench/predict_floor.py [--model runs/serve-bench-ner-export]

Writes bench/results/predict_floor.json.
"""

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))


def best_of(fn, n: int = 3) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="runs/serve-bench-ner-export")
    ap.add_argument("--data", default=os.path.join(os.environ.get("DATA", str(ROOT.parent / "shared/data")),
                                                   "conll2003", "eng.testb"))
    ap.add_argument("--out", default=str(ROOT / "bench/results/predict_floor.json"))
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch

    from ftkit.engine.inference import Predictor
    from speed import conll_sentences

    sents = conll_sentences(Path(args.data))
    predictor = Predictor.load(args.model)
    model = predictor.model
    cfg = model.config
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    shapes: list[tuple[int, int]] = []
    hook = model.register_forward_pre_hook(
        lambda _m, _a, kw: shapes.append(tuple(kw["input_ids"].shape)), with_kwargs=True)
    records = [{"text": s} for s in sents]
    predictor.predict(records[:64], batch_size=32)  # warm-up
    shapes.clear()
    t = time.perf_counter()
    predictor.predict(records, batch_size=32)
    loop_s = time.perf_counter() - t
    hook.remove()

    rows = sum(n * length for n, length in shapes)
    linear_flop = sum(2 * rows * m.in_features * m.out_features for m in linears)
    head = cfg.hidden_size // cfg.num_attention_heads
    attention_flop = sum(4 * n * cfg.num_attention_heads * length * length * head * cfg.num_hidden_layers
                         for n, length in shapes)

    # the linear layers alone, at the shapes the passes used
    weights = [(torch.randn(m.out_features, m.in_features), torch.randn(m.out_features)) for m in linears]
    inputs = {(n * length, k): torch.randn(n * length, k) for n, length in shapes
              for k in {m.in_features for m in linears}}

    def linears_only():
        for n, length in shapes:
            for w, b in weights:
                torch.nn.functional.linear(inputs[(n * length, w.shape[1])], w, b)

    from ftkit.engine.cpu_linear import available

    packed = [(torch.ops.mkldnn._reorder_linear_weight(w, None), b) for w, b in weights] if available() else None

    def linears_packed():
        for n, length in shapes:
            for (w, b), (pw, _) in zip(weights, packed):
                torch.ops.mkldnn._linear_pointwise(inputs[(n * length, w.shape[1])], pw, b, "none", [], "")

    with torch.inference_mode():
        linears_s = best_of(linears_only)
        packed_s = best_of(linears_packed) if packed else None
        a, b = torch.randn(4096, 1024), torch.randn(1024, 4096)
        for _ in range(3):
            a @ b
        peak = 2 * 4096 * 1024 * 4096 / best_of(lambda: a @ b, 10) / 1e9

    speed = ROOT / "bench/results/speed.json"
    pipeline_default = None
    if speed.exists():
        pipeline_default = json.loads(speed.read_text()).get("predict", {}).get("pipeline", {}).get(
            "loop_s", {}).get("default")
    report = {
        "name": "predict_floor", "model": args.model, "cpus": os.cpu_count(), "machine": platform.platform(),
        "torch_threads": torch.get_num_threads(), "sentences": len(sents), "batch_size": 32,
        "passes": len(shapes), "positions": rows,
        "linear_gflop": round(linear_flop / 1e9, 1), "attention_gflop": round(attention_flop / 1e9, 1),
        "matmul_peak_gflops": round(peak, 1),
        "linears_alone_s": round(linears_s, 2),
        "linears_alone_gflops": round(linear_flop / linears_s / 1e9, 1),
        "linears_alone_onednn_packed_s": round(packed_s, 2) if packed_s else None,
        "linears_alone_onednn_packed_gflops": round(linear_flop / packed_s / 1e9, 1) if packed_s else None,
        "ftkit_predict_loop_s": round(loop_s, 2),
        "pipeline_default_loop_s": pipeline_default,
        "target_5x_whole_command_s": round(pipeline_default / 5, 2) if pipeline_default else None,
    }
    if pipeline_default:
        report["linears_alone_vs_5x_budget"] = round(linears_s / (pipeline_default / 5), 2)
        if packed_s:
            report["linears_alone_onednn_packed_vs_5x_budget"] = round(packed_s / (pipeline_default / 5), 2)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
