"""Linear layers on oneDNN with packed weights (engine/cpu_linear.py): the same outputs as ``F.linear``, used
only in inference, repacked when a weight changes, and nothing left on the model."""

import copy
import io
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from ftkit.engine.cpu_linear import _PACKED, available, packed_linears

pytestmark = pytest.mark.skipif(not available(), reason="oneDNN's packed linear is not available in this build")


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.GELU(), torch.nn.Linear(32, 4, bias=False))


def _reference(m, x):
    """The same layers through F.linear, computed by hand."""
    h = torch.nn.functional.gelu(torch.nn.functional.linear(x, m[0].weight, m[0].bias))
    return torch.nn.functional.linear(h, m[2].weight)


def test_packed_forward_equals_f_linear_and_leaves_the_model_as_it_was():
    m = _model()
    x = torch.randn(3, 5, 16)  # 3-D input: flattened for the product, shaped back
    with torch.inference_mode(), packed_linears(m) as n:
        got = m(x)
        assert n == 2 and all("forward" in layer.__dict__ for layer in (m[0], m[2]))
    assert got.shape == (3, 5, 4)
    torch.testing.assert_close(got, _reference(m, x), rtol=1e-5, atol=1e-6)
    assert m[0] in _PACKED and m[2] in _PACKED  # the packed weights are cached beside the model ...
    assert not any("forward" in layer.__dict__ for layer in m)  # ... and the layers are plain again
    # so the model can still be copied and pickled (an opaque oneDNN tensor can be neither)
    copy.deepcopy(m)
    torch.save(m, io.BytesIO())
    assert set(m.state_dict()) == {"0.weight", "0.bias", "2.weight"}


def test_a_changed_weight_is_repacked_and_training_never_uses_the_packed_weights():
    m = _model()
    x = torch.randn(4, 16)
    with torch.inference_mode(), packed_linears(m):
        m(x)
    packed = _PACKED[m[0]][1]
    with torch.no_grad():
        m[0].weight.mul_(2.0)  # what an optimizer step does: in place
    with torch.inference_mode(), packed_linears(m):
        got = m(x)
    assert _PACKED[m[0]][1] is not packed
    torch.testing.assert_close(got, _reference(m, x), rtol=1e-5, atol=1e-6)
    # with autograd on, F.linear runs: gradients flow as without the block
    with packed_linears(m):
        out = m(x)
        assert out.requires_grad
        out.sum().backward()
    assert m[0].weight.grad is not None and float(m[0].weight.grad.abs().sum()) > 0


def test_other_dtypes_and_subclasses_keep_their_own_forward():
    class MyLinear(torch.nn.Linear):
        pass

    m = torch.nn.Sequential(torch.nn.Linear(8, 8), MyLinear(8, 8)).to(torch.bfloat16)
    x = torch.randn(2, 8, dtype=torch.bfloat16)
    with torch.inference_mode(), packed_linears(m) as n:
        out = m(x)
    assert n == 1  # the subclass is left alone
    assert m[0] not in _PACKED  # bf16: F.linear ran
    assert out.dtype == torch.bfloat16


def test_predictions_with_and_without_packed_weights_agree(tiny_models, tmp_path):
    """The engine's inference path on a tiny NER model: logits with the packed linears equal MKL's to float
    noise, and ``FTKIT_CPU_PREPACK=0`` turns it off (checked in a fresh process: the probe is cached)."""
    from ftkit.engine.batched import forward_outputs
    from dist_probe import evaluation_setup

    task, facts, tok, examples, features, model = evaluation_setup("ner", str(tiny_models("bert")), 16)
    cpu = torch.device("cpu")
    with_packed = forward_outputs(task, facts, model, tok, features, 8, cpu)
    assert model.bert.encoder.layer[0].attention.self.query in _PACKED
    assert not any("forward" in m.__dict__ for m in model.modules())
    import ftkit.engine.cpu_linear as cl

    cl.available.cache_clear()
    os.environ["FTKIT_CPU_PREPACK"] = "0"
    try:
        assert not available()
        _PACKED.clear()
        without = forward_outputs(task, facts, model, tok, features, 8, cpu)
        assert len(_PACKED) == 0
    finally:
        del os.environ["FTKIT_CPU_PREPACK"]
        cl.available.cache_clear()
    np.testing.assert_allclose(np.asarray(with_packed), np.asarray(without), rtol=1e-4, atol=1e-5)
    # the switch as a user sets it, in a fresh process
    code = "from ftkit.engine.cpu_linear import available; print(available())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "FTKIT_CPU_PREPACK": "0"}).stdout.strip()
    assert out == "False"
