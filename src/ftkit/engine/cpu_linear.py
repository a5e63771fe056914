"""Linear layers of CPU inference on oneDNN, with weights prepacked once.

PyTorch runs an fp32 ``nn.Linear`` on a CPU through MKL's sgemm, which lays the weight out for its kernels on
every call. oneDNN (bundled with every PyTorch CPU build) can take the weight laid out once, ahead of time:
``torch.ops.mkldnn._reorder_linear_weight`` packs it and ``torch.ops.mkldnn._linear_pointwise`` runs the
product -- the pair ``torch.compile`` (inductor, with freezing) emits for a linear layer on a CPU. Measured on
the 2 AMD EPYC (Zen 4) cores here at the shapes of a MiniLM pass over CoNLL sentences (1,024 positions, 384 <->
1,536): 182-196 GFLOP/s through MKL, 217-221 through the packed weights; ``Predictor.predict`` on random groups
of 57 CoNLL sentences 339 -> 362 sentences/s (12 runs alternating ``FTKIT_CPU_PREPACK``), the same entities
(fp32 both ways: values differ in summation order only, about 1e-6 relative).

Within ``with packed_linears(model):`` every plain ``nn.Linear`` of the model has such a forward, used only
where it is exact to use: no autograd (inference mode or no_grad), an fp32 input on the CPU, and the weight it packed
unchanged since (``Tensor._version`` moves on every in-place update, an optimizer step or ``load_state_dict``
included; a layer whose weight changed repacks on its next inference call). The packed weights are kept
beside the model (a weak mapping), so the model itself is left exactly as it was: copied, pickled or trained
after predicting, it never meets them. Anything else -- training,
another dtype or device -- runs ``F.linear`` as before. The operators are private to PyTorch, so whether they
run and agree with ``F.linear`` is checked once per process on a probe; where they do not (another build, an
architecture without oneDNN), nothing changes. ``FTKIT_CPU_PREPACK=0`` turns it off.

Memory: one more copy of the linear weights while the model lives (MiniLM: 88 MB), and oneDNN's kernels for
each input shape it meets (its cache holds 1,024; a MiniLM server levels off a few hundred MB higher).
"""

from __future__ import annotations

import contextlib
import functools
import os
import types
import weakref

import torch

#: how far the packed product may be from ``F.linear`` on the probe (relative to the output's scale)
PROBE_TOLERANCE = 1e-5


@functools.lru_cache(maxsize=1)
def available() -> bool:
    """Whether oneDNN's packed linear runs here and agrees with ``F.linear`` (checked once per process)."""
    if os.environ.get("FTKIT_CPU_PREPACK", "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    try:
        if not torch.backends.mkldnn.is_available():
            return False
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(7, 48, generator=gen)
        weight, bias = torch.randn(40, 48, generator=gen), torch.randn(40, generator=gen)
        expected = torch.nn.functional.linear(x, weight, bias)
        for b in (bias, None):
            got = torch.ops.mkldnn._linear_pointwise(x, torch.ops.mkldnn._reorder_linear_weight(weight, None), b,
                                                     "none", [], "")
            want = expected if b is not None else expected - bias
            if got.shape != want.shape or float((got - want).abs().max()) > PROBE_TOLERANCE * float(
                    want.abs().max()):
                return False
        return True
    except Exception:  # noqa: BLE001 - operators missing or refusing: MKL's F.linear stays
        return False


#: module -> ((weight pointer, weight version), packed weight): beside the model, never in it (an opaque oneDNN
#: tensor can be neither copied nor pickled, and a model may be both after predicting)
_PACKED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _forward(self, x):
    weight = self.weight
    if (torch.is_grad_enabled() or x.dtype != torch.float32 or weight.dtype != torch.float32
            or x.device.type != "cpu" or weight.device.type != "cpu"):
        return torch.nn.functional.linear(x, weight, self.bias)
    state = (weight.data_ptr(), _version(weight))
    cached = _PACKED.get(self)
    if cached is None or cached[0] != state:  # first call, or the weight changed since
        cached = _PACKED[self] = (state, torch.ops.mkldnn._reorder_linear_weight(weight.detach(), None))
    shape = x.shape
    out = torch.ops.mkldnn._linear_pointwise(x.reshape(-1, shape[-1]), cached[1], self.bias, "none", [], "")
    return out.reshape(*shape[:-1], out.shape[-1])


def _version(tensor):
    try:
        return tensor._version
    except RuntimeError:  # an inference tensor (made under inference mode) keeps no version counter
        return None


@contextlib.contextmanager
def packed_linears(model):
    """Within the block, the plain ``nn.Linear`` layers of ``model`` run the packed forward (see the module's
    doc); the block yields how many do (0 where oneDNN is not available). On leaving, the layers are as they
    were: the model keeps nothing of it (the packed weights stay cached beside it for the next block)."""
    layers = []
    if isinstance(model, torch.nn.Module) and available():
        # (subclasses -- quantized, LoRA... -- have forwards of their own; a layer with a forward of its own
        # set on the instance is left alone)
        layers = [m for m in model.modules() if type(m) is torch.nn.Linear and "forward" not in m.__dict__]
    for m in layers:
        m.forward = types.MethodType(_forward, m)
    try:
        yield len(layers)
    finally:
        for m in layers:
            m.__dict__.pop("forward", None)
