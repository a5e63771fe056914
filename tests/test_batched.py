"""The one-process prediction loop (length-sorted batches, no Trainer) gives what the Trainer's predict gives."""

import contextlib
import sys
import tempfile

import numpy as np
import pytest
from dist_probe import evaluation_setup


def _trainer_predict(task, facts, model, tokenizer, features, batch_size):
    """The reference: transformers' own prediction loop over the features in order."""
    from transformers import TrainingArguments

    from ftkit.engine.trainer import FtkitTrainer

    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(output_dir=tmp, per_device_eval_batch_size=batch_size, report_to="none",
                                 disable_tqdm=True, use_cpu=True)
        trainer = FtkitTrainer(model=model, args=args, data_collator=task.collator(tokenizer, facts),
                               processing_class=tokenizer,
                               preprocess_logits_for_metrics=lambda logits, _: task.reduce_logits(logits, facts))
        with contextlib.redirect_stdout(sys.stderr):
            return trainer.predict(features).predictions


def _rounded(x):
    if isinstance(x, float):
        return round(x, 3)
    if isinstance(x, dict):
        return {k: _rounded(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_rounded(v) for v in x]
    return x


@pytest.mark.parametrize("task_name", ["ner", "classification", "relation", "qa"])
def test_sorted_batches_give_the_trainers_outputs_and_predictions(tiny_models, task_name):
    import torch

    from ftkit.engine.batched import feature_lengths, forward_outputs

    task, facts, tok, examples, features, model = evaluation_setup(task_name, str(tiny_models("bert")), 23)
    model._ftkit_packs_exactly = False  # the planned padded passes (packed ones: the test below)
    seen = []
    hook = model.register_forward_pre_hook(lambda m, a, kw: seen.append(tuple(kw["input_ids"].shape)),
                                           with_kwargs=True)
    try:
        ours = forward_outputs(task, facts, model, tok, features, 4, torch.device("cpu"))
    finally:
        hook.remove()
    ref = _trainer_predict(task, facts, model, tok, features, 4)
    assert type(ours) is type(ref) and np.shape(ours) == np.shape(ref)
    lengths = feature_lengths(features)
    if np.ndim(ours) == 3:  # per sub-token outputs: equal over each feature's own sub-tokens (the rest is padding)
        for i, n in enumerate(lengths):
            np.testing.assert_allclose(ours[i, :n], ref[i, :n], rtol=1e-4, atol=1e-5)
    else:
        np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-5)
    # the same predictions (scores equal up to float noise: another padding changes the sums' order)
    assert _rounded(task.decode(examples, features, ours, facts)) == _rounded(task.decode(examples, features, ref, facts))
    # one forward per planned batch (at most 4 features, the longest first), each padded to its own longest
    # feature only, every feature in exactly one pass
    from ftkit.engine.batched import plan_batches

    plan = plan_batches(lengths, 4)
    assert [s for s in seen] == [(len(b), int(lengths[b].max())) for b in plan]
    assert all(len(b) <= 4 for b in plan) and sorted(np.concatenate(plan).tolist()) == list(range(len(features)))
    assert seen[0][1] == max(lengths)
    in_order = sum(len(c) * max(c) for c in (lengths[i:i + 4] for i in range(0, len(lengths), 4)))
    assert sum(s[0] * s[1] for s in seen) <= in_order  # fewer padded positions than batches in feature order


def _plan_cost(plan, lengths, per_pass):
    return sum(per_pass + len(b) * int(lengths[b].max()) for b in plan)


def test_plan_batches_places_the_cuts_where_they_cost_least():
    """The plan's cost (a fixed cost per pass plus padded positions) is the least over every way of cutting the
    length-sorted order into runs of at most batch_size (checked by brute force), never more than cutting
    every batch_size, and a few alike inputs stay one pass."""
    import itertools
    import random

    from ftkit.engine.batched import plan_batches

    rng = random.Random(0)
    for trial in range(200):
        n, size, per_pass = rng.randint(1, 9), rng.randint(1, 5), rng.choice([0, 8, 48, 500])
        lengths = np.array([rng.choice([rng.randint(3, 20), rng.randint(20, 120)]) for _ in range(n)])
        plan = plan_batches(lengths, size, per_pass)
        assert sorted(np.concatenate(plan).tolist()) == list(range(n)) and all(0 < len(b) <= size for b in plan)
        assert all(lengths[b].max() <= lengths[plan[0]].max() for b in plan)  # the longest first
        ordered = sorted(range(n), key=lambda i: -lengths[i])
        best = min(
            _plan_cost([np.array(ordered[a:b]) for a, b in zip((0, *cuts), (*cuts, n))], lengths, per_pass)
            for k in range(n) for cuts in itertools.combinations(range(1, n), k)
            if all(b - a <= size for a, b in zip((0, *cuts), (*cuts, n))))
        assert _plan_cost(plan, lengths, per_pass) == best, (lengths, size, per_pass)
        fixed = [np.array(ordered[i:i + size]) for i in range(0, n, size)]
        assert _plan_cost(plan, lengths, per_pass) <= _plan_cost(fixed, lengths, per_pass)
    # a server's batch: 31 short sentences and one long one -> the long one goes alone
    lengths = np.array([15] * 31 + [60])
    plan = plan_batches(lengths, 32)
    assert [len(b) for b in plan] == [1, 31] and plan[0].tolist() == [31]
    assert len(plan_batches(np.array([14, 15, 16, 15]), 32)) == 1


def test_predictor_and_scoring_build_no_trainer(tiny_models, monkeypatch):
    """`ftkit predict`/`serve` (Predictor) and `score_split` in one process: no Trainer is built per call."""
    from ftkit.engine import trainer as trainer_module
    from ftkit.engine.inference import Predictor, score_split

    task, facts, tok, examples, features, model = evaluation_setup("ner", str(tiny_models("bert")), 12)
    expected = score_split(task, facts, model, tok, examples, features, batch_size=5, device="cpu")

    def refuse(*a, **kw):
        raise AssertionError("a Trainer was built for prediction")

    monkeypatch.setattr(trainer_module.FtkitTrainer, "__init__", refuse)
    predictions, scores = score_split(task, facts, model, tok, examples, features, batch_size=5, device="cpu")
    assert predictions == expected[0] and scores == expected[1]
    p = Predictor(task, facts, model, tok, {}, device="cpu")
    out = p.predict([{"tokens": list(t)} for t in examples["tokens"][:3]], batch_size=2)
    assert len(out) == 3 and all("entities" in o for o in out)


@pytest.mark.parametrize("task_name", ["ner", "classification", "relation", "qa"])
def test_small_sets_encoded_directly_equal_datasets_map(tiny_models, task_name, tmp_path):
    """A set that fits one map batch and is not cached is encoded by calling the task's batch function
    directly (Predictor.predict's path): the same rows, columns and types as datasets' map writes."""
    from ftkit.data.parallel import planned

    task, facts, tok, examples, direct, _ = evaluation_setup(task_name, str(tiny_models("bert")), 23)
    with planned(1, str(tmp_path / "features.arrow"), "probe"):  # the cached path: datasets' own map
        mapped = task.encode(examples, tok, facts, train=False)
    assert mapped.cache_files and not direct.cache_files
    assert direct.column_names == mapped.column_names and direct.features == mapped.features
    assert direct.to_list() == mapped.to_list() and len(direct) >= len(examples)


def test_pack_rows_places_every_input_once_within_the_row():
    import random

    from ftkit.engine.batched import pack_rows

    rng = random.Random(0)
    for _ in range(200):
        lengths = [rng.randint(1, 60) for _ in range(rng.randint(1, 70))]
        row = max(64, max(lengths))
        rows = pack_rows(lengths, row)
        assert sorted(i for r in rows for i in r) == list(range(len(lengths)))
        assert all(sum(lengths[i] for i in r) <= row for r in rows)
        # first fit: no row could have taken an input of a later row
        assert sum(lengths) / row <= len(rows) <= 2 * sum(lengths) / row + 1


def test_packed_passes_give_the_padded_outputs_for_inputs_of_mixed_lengths(tiny_models):
    """What a server gathers: inputs of any length. Laid end to end in rows (block-diagonal attention, positions
    from 0), every input gets the outputs of its own padded pass, and packing is used where it pays."""
    import torch

    from ftkit.engine.batched import PACK_ROW, feature_lengths, forward_outputs, packs_exactly

    task, facts, tok, examples, features, model = evaluation_setup("ner", str(tiny_models("bert")), 48)
    # short sentences and one long one, in no order (as concurrent requests arrive)
    lengths = feature_lengths(features)
    keep = sorted([i for i, n in enumerate(lengths) if n <= 30] + [int(np.argmax(lengths))])
    examples = examples.select(sorted({int(features[i]["example_id"]) for i in keep}))
    features = task.encode(examples, tok, facts, train=False)
    cpu = torch.device("cpu")
    assert task.outputs_per_token and packs_exactly(model, cpu)
    seen = []
    hook = model.register_forward_pre_hook(lambda m, a, kw: seen.append(tuple(kw["input_ids"].shape)
                                                                      + ("position_ids" in kw,)), with_kwargs=True)
    try:
        packed = forward_outputs(task, facts, model, tok, features, 64, cpu)
    finally:
        hook.remove()
    lengths = feature_lengths(features)
    assert any(p for *_, p in seen)  # a packed pass ran
    packed_positions = sum(r * w for r, w, p in seen if p)
    assert packed_positions < len(lengths) * max(lengths)  # fewer positions than one padded pass
    # rows are PACK_ROW long; an input longer than a row keeps a padded pass of its own
    assert all(w <= PACK_ROW for _, w, p in seen if p)
    assert max(lengths) > PACK_ROW and any(not p and w == max(lengths) for _, w, p in seen)
    model._ftkit_packs_exactly = False  # the padded passes, for reference
    try:
        padded = forward_outputs(task, facts, model, tok, features, 64, cpu)
    finally:
        model._ftkit_packs_exactly = None
    assert np.shape(packed) == np.shape(padded)
    for i, n in enumerate(lengths):
        np.testing.assert_allclose(packed[i, :n], padded[i, :n], rtol=1e-4, atol=1e-5)
    assert _rounded(task.decode(examples, features, packed, facts)) == _rounded(
        task.decode(examples, features, padded, facts))
    # classification pools over positions: never packed
    ctask, cfacts, ctok, _, cfeatures, cmodel = evaluation_setup("classification", str(tiny_models("bert")), 12)
    assert not ctask.outputs_per_token


def test_a_model_whose_positions_do_not_restart_keeps_padded_passes(tiny_models):
    import torch
    from transformers import AutoModelForTokenClassification

    from ftkit.engine.batched import packs_exactly

    # RoBERTa numbers positions from padding_idx + 1: positions from 0 in a packed row would change its logits
    model = AutoModelForTokenClassification.from_pretrained(str(tiny_models("roberta")), num_labels=3).eval()
    with torch.inference_mode():
        assert packs_exactly(model, torch.device("cpu")) is False
