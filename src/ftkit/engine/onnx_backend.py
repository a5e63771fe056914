"""ONNX: export a trained encoder model with ``torch.onnx.export``, and run an export with onnxruntime.

Export uses the ``torch.export``-based exporter (``dynamo=True``, the default and recommended one
since torch 2.9; it needs ``onnxscript``), with dynamic batch and sequence axes. The graph's inputs
are the tokenizer's model inputs (``input_ids``, ``attention_mask`` and, for BERT-like models,
``token_type_ids``); its outputs are the model's own (``logits``; ``start_logits``/``end_logits``
for QA; for the relation entity-start head, the relation logits -- the pooling over the ``<e1>``/``<e2>``
markers is part of the graph). Right after export the graph is checked against PyTorch on a batch.

:class:`OnnxModel` stands where a PyTorch model stands in the engine: ``model_outputs`` hands it the
features, and it runs them in the same batches, through the task's own collator (padding) and
``reduce_logits``, so ``task.decode`` sees what it sees from PyTorch (windows, entity-start pooling,
n-best QA decoding are the task's, unchanged).
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ftkit.errors import FtkitError
from ftkit.log import log

ONNX_FILE = "model.onnx"
#: what `--format onnx` covers, for the one-line refusal
EXPORTABLE = "ONNX export covers the encoder family (BERT-like) for classification, ner, qa and relation"
#: the model inputs a graph may take, in this order
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
#: above this many bytes of weights, the graph keeps them in an external file (protobuf's 2 GB limit)
EXTERNAL_DATA_BYTES = 1_800_000_000


def not_exportable(task, facts) -> str | None:
    """Why this task/family pair cannot be exported to ONNX (None when it can)."""
    if task.generates:
        return (f"task {task.name} generates text: its outputs come from a decoding loop (beam search over "
                "an encoder and a decoder), which is not one ONNX graph")
    if facts.family == "t5":
        return "t5 heads run the decoder too (decoder inputs built inside the model), which is not exported yet"
    if facts.family != "encoder":
        return (f"the {facts.family} family is not exported yet (only the encoder family's graphs are checked "
                "for parity with PyTorch)")
    return None


def _wrap(model, output_names: list[str]):
    """The model with its outputs as a plain tuple (an ONNX graph returns tensors, not a ModelOutput)."""
    import torch

    class Exported(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask=None, token_type_ids=None):
            inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
            out = self.model(**{k: v for k, v in inputs.items() if v is not None})
            return tuple(out[k] for k in output_names)

    return Exported().eval()


def export_onnx(model, tokenizer, out_dir: Path, quantize: str | None = None) -> dict[str, Any]:
    """Write ``out_dir/model.onnx``; returns what ftkit.json records under ``onnx``."""
    import torch
    from torch.export import Dim

    model = model.eval()
    sample = tokenizer(["EU rejects German call to boycott British lamb .", "Peter Blackburn"],
                       padding=True, return_tensors="pt")
    inputs = {k: sample[k] for k in INPUTS if k in sample}
    with torch.no_grad():
        eager = model(**inputs)
    output_names = [k for k in eager.keys() if k != "loss" and isinstance(eager[k], torch.Tensor)]
    batch, sequence = Dim("batch"), Dim("sequence")
    size = sum(p.numel() * p.element_size() for p in model.parameters())
    path = Path(out_dir) / ONNX_FILE
    log(f"  exporting {type(model).__name__} with torch.onnx.export (dynamo) ...")
    try:
        # the exporter prints its progress on stdout (the command's output) and logs warnings about
        # operators of packages that are not installed: neither concerns the user
        with contextlib.redirect_stdout(io.StringIO()), _quiet_logger("torch.onnx"), _eager_attention(model):
            torch.onnx.export(_wrap(model, output_names), (), str(path), kwargs=inputs, input_names=list(inputs),
                              output_names=output_names, dynamo=True, external_data=size > EXTERNAL_DATA_BYTES,
                              dynamic_shapes={k: {0: batch, 1: sequence} for k in inputs}, verbose=False)
    except Exception as e:  # noqa: BLE001 - the exporter raises many kinds
        first = " ".join(str(e).split())[:200]
        raise FtkitError(f"torch.onnx.export failed for {type(model).__name__}: {first}") from None
    session = _session(path)
    got = session.run(output_names, {k: v.numpy() for k, v in inputs.items()})
    diff = max(float(np.abs(g - eager[k].numpy()).max()) for g, k in zip(got, output_names))
    info: dict[str, Any] = {"file": ONNX_FILE, "inputs": list(inputs), "outputs": output_names,
                            "dynamic_axes": {"0": "batch", "1": "sequence"}, "opset": _opset(path),
                            "exporter": f"torch.onnx.export(dynamo=True), torch {torch.__version__}",
                            "check_max_abs_diff": diff, "quantized": None}
    if diff > 1e-3:
        raise FtkitError(f"the exported ONNX graph disagrees with PyTorch (max abs diff {diff:.2g} on a test batch)")
    if quantize == "int8":
        info["quantized"] = "int8"
        info["exporter"] += "; onnxruntime quant_pre_process + quantize_dynamic (QInt8 weights, per channel)"
        _quantize_int8(path)
    return info


@contextlib.contextmanager
def _quiet_logger(name: str):
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


@contextlib.contextmanager
def _eager_attention(model):
    """The model's attention as plain matmul/softmax ops while it is exported: SDPA's decomposition adds
    masking ops (Where, IsNaN) and transposes that onnxruntime runs as they are; the eager graph computes the
    same and its int8 version runs about 10% faster here (``bench/onnx_deploy.py``; fp32 parity unchanged)."""
    previous = getattr(getattr(model, "config", None), "_attn_implementation", None)
    switch = previous not in (None, "eager") and hasattr(model, "set_attn_implementation")
    if switch:
        try:
            model.set_attn_implementation("eager")
        except Exception:  # noqa: BLE001 - a model without an eager path is exported as it is
            switch = False
    try:
        yield
    finally:
        if switch:
            model.set_attn_implementation(previous)


def _opset(path: Path) -> int | None:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


def _quantize_int8(path: Path) -> None:
    """onnxruntime dynamic quantization, in place: int8 weights (one scale per output channel),
    activations quantized on the fly. The graph is first pre-processed as onnxruntime recommends
    (its basic graph optimizations and shape inference)."""
    import tempfile

    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    log("  quantizing the weights to int8 (onnxruntime quantize_dynamic, per channel) ...")
    with tempfile.TemporaryDirectory(prefix="ftkit-int8-") as tmp_dir:
        pre, out = Path(tmp_dir) / "pre.onnx", Path(tmp_dir) / "int8.onnx"
        with contextlib.redirect_stdout(io.StringIO()), _quiet_logger(""):
            # (symbolic shape inference does not follow the exporter's dynamic shapes; ONNX's own does)
            quant_pre_process(str(path), str(pre), skip_symbolic_shape=True)
            quantize_dynamic(str(pre), str(out), weight_type=QuantType.QInt8, per_channel=True)
        for f in path.parent.glob(path.name + "*"):  # the fp32 graph and any external data file
            f.unlink()
        shutil.move(str(out), str(path))  # (the temporary folder may be on another file system)


#: onnxruntime graph fusions left out: its fused SkipLayerNormalization kernel ran 0.62 ms a call where the
#: LayerNormalization + Add it replaces take 0.13 ms on this machine's CPU (an onnxruntime profile of the
#: MiniLM NER graph over the CoNLL test set: 21% of the int8 graph's time; without the fusion the whole
#: forward is 13-19% faster, outputs within float rounding). Leaving the fusion out is onnxruntime's own
#: advice for its other problems (microsoft/onnxruntime#17689).
DISABLED_OPTIMIZERS = ["SkipLayerNormFusion"]


def _session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"],
                                disabled_optimizers=DISABLED_OPTIMIZERS)


class OnnxModel:
    """An exported ONNX graph where the engine expects a model: ``outputs`` gives per-feature reduced
    outputs exactly as the Trainer's prediction loop does for a PyTorch model."""

    is_onnx = True

    def __init__(self, session, input_names: list[str], output_names: list[str], meta: dict[str, Any]):
        self.session, self.input_names, self.output_names, self.meta = session, input_names, output_names, meta

    @classmethod
    def load(cls, folder: str | Path, meta: dict[str, Any]) -> "OnnxModel":
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            raise FtkitError("this is an ONNX export: running it needs onnxruntime",
                             hint="pip install onnxruntime") from None
        onnx_meta = meta.get("onnx") or {}
        path = Path(folder) / onnx_meta.get("file", ONNX_FILE)
        if not path.exists():
            raise FtkitError(f"the ONNX export has no {path.name}", file=folder)
        session = _session(path)
        inputs = [i.name for i in session.get_inputs()]
        outputs = [o.name for o in session.get_outputs()]
        return cls(session, inputs, outputs, meta)

    # the engine treats models alike: these are no-ops for a graph
    def eval(self) -> "OnnxModel":
        return self

    def to(self, *args, **kwargs) -> "OnnxModel":
        return self

    def run(self, batch: dict[str, Any]) -> list[np.ndarray]:
        """Raw graph outputs for one padded batch (numpy or torch tensors)."""
        feed = {k: np.asarray(batch[k], dtype=np.int64) for k in self.input_names}
        return self.session.run(self.output_names, feed)

    def outputs(self, task, facts, tokenizer, features, batch_size: int = 32):
        """Per-feature outputs of ``features`` in order, as for a PyTorch model (``batched.sorted_outputs``:
        length-sorted batches padded by the task's collator, reduced by ``task.reduce_logits``, joined in
        feature order padded with -100 as the Trainer joins them)."""
        import torch

        from ftkit.engine.batched import sorted_outputs

        columns = [c for c in features.column_names if c in self.input_names]
        missing = [c for c in self.input_names if c not in columns]
        if missing:
            raise FtkitError(f"the features lack the graph inputs {', '.join(missing)}")

        def run(batch):
            return task.reduce_logits(tuple(torch.from_numpy(o) for o in self.run(batch)), facts)

        return sorted_outputs(features, columns, task.collator(tokenizer, facts), run, batch_size)
