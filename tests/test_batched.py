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
