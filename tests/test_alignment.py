"""Word/sub-token alignment, windows over long sentences and stitching back per word."""

import numpy as np
import pytest
from datasets import Dataset
from conftest import facts

from ftkit.families import load_config, load_tokenizer
from ftkit.tasks.ner import NerOptions, NerTask, plan_windows, split_words, stitch

WORDS = ("Peter Blackburn of Unilever-Bestfoods visited Frankfurt-am-Main and Nieuwpoort on Tuesday "
         "with Dr. Johannes Schmidt-Ellerbrock , who leads Internationalisation at Volkswagenwerk .").split()


@pytest.fixture(scope="module")
def minilm_tok():
    return load_tokenizer(load_config("minilm"))


def _tags(n):
    cycle = ["B-PER", "I-PER", "O", "B-ORG", "O", "B-LOC", "I-LOC", "O"]
    return [cycle[i % len(cycle)] for i in range(n)]


def test_plan_windows_cover_everything_within_budget():
    lengths = [1, 3, 2, 5, 1, 1, 4, 2, 2, 7, 1, 3]
    wins = plan_windows(lengths, budget=8, stride=3)
    covered = set()
    for s, e in wins:
        assert sum(lengths[s:e]) <= 8
        covered.update(range(s, e))
    assert covered == set(range(len(lengths)))
    assert wins[0][0] == 0 and wins[-1][1] == len(lengths)
    # consecutive windows overlap (stride > 0) and always move forward
    for (s1, e1), (s2, e2) in zip(wins, wins[1:]):
        assert s1 < s2 <= e1 and e2 > e1


def test_plan_windows_word_longer_than_budget_gets_its_own_window():
    assert plan_windows([2, 50, 2], budget=10, stride=0) == [(0, 1), (1, 2), (2, 3)]


def test_stitch_prefers_the_window_with_most_context():
    # word 3 is at the right edge of window A and in the middle of window B
    a = (0, 4, ["a0", "a1", "a2", "a3"])
    b = (2, 7, ["b2", "b3", "b4", "b5", "b6"])
    assert stitch(7, [a, b]) == ["a0", "a1", "a2", "b3", "b4", "b5", "b6"]


def _oracle_outputs(features, labels_len, garbage_continuations=False):
    """Outputs that predict the gold label at every labelled position."""
    width = max(len(x) for x in features["input_ids"])
    out = np.full((len(features), width, 2), -100.0)
    for i, (labs, wids) in enumerate(zip(features["labels"], features["word_ids"])):
        prev = None
        for j, (lab, w) in enumerate(zip(labs, wids)):
            if w < 0:
                continue
            first = w != prev
            prev = w
            pred = lab if first else ((lab + 1) % labels_len if garbage_continuations else lab)
            out[i, j] = [max(pred, 0), 0.9]
    return out


@pytest.mark.parametrize("max_length", [12, 20, 512])
def test_long_sentences_are_windowed_and_stitched_never_truncated(minilm_tok, max_length):
    task = NerTask(NerOptions(window_stride=4))
    examples = Dataset.from_list([
        {"tokens": WORDS, "tags": _tags(len(WORDS)), "source": "x:1"},
        {"tokens": WORDS[:3], "tags": _tags(3), "source": "x:2"},
    ])
    labels = task.labels(examples)
    features = task.encode(examples, minilm_tok, facts(task, labels, max_length), train=False)
    assert all(len(ids) <= max_length for ids in features["input_ids"])
    n_windows = features["example_id"].count(0)
    assert (n_windows > 1) == (max_length < 40)
    # every word of the long sentence appears in some window, with its first sub-token labelled
    seen = {w for ex, wids in zip(features["example_id"], features["word_ids"]) if ex == 0 for w in wids if w >= 0}
    assert seen == set(range(len(WORDS)))
    preds = task.decode(examples, features, _oracle_outputs(features, len(labels)), facts(task, labels))
    assert [[t for t, _ in p] for p in preds] == examples["tags"]
    assert task.score(examples, preds, facts(task, labels))["f1"] == 1.0


def test_first_subtoken_alignment(minilm_tok):
    task = NerTask()
    examples = Dataset.from_list([{"tokens": ["Volkswagenwerk", "rocks"], "tags": ["B-ORG", "O"], "source": "x"}])
    labels = task.labels(examples)
    f = task.encode(examples, minilm_tok, facts(task, labels, 64), train=True)[0]
    n_sub = sum(1 for w in f["word_ids"] if w == 0)
    assert n_sub > 1  # the word really is split
    assert f["labels"][0] == -100 and f["labels"][-1] == -100  # [CLS] / [SEP]
    assert f["labels"][1] == labels.index("B-ORG")
    assert f["labels"][2:1 + n_sub] == [-100] * (n_sub - 1)
    assert f["labels"][1 + n_sub] == labels.index("O")


def test_label_all_subtokens_trains_on_continuations_but_scores_words(minilm_tok):
    task = NerTask(NerOptions(label_all_subtokens=True))
    examples = Dataset.from_list([{"tokens": ["Volkswagenwerk", "rocks"], "tags": ["B-ORG", "O"], "source": "x"}])
    labels = task.labels(examples)
    train_f = task.encode(examples, minilm_tok, facts(task, labels, 64), train=True)
    n_sub = sum(1 for w in train_f[0]["word_ids"] if w == 0)
    assert train_f[0]["labels"][2:1 + n_sub] == [labels.index("I-ORG")] * (n_sub - 1)
    # evaluation features label first sub-tokens only, and continuations never affect the decoded words
    eval_f = task.encode(examples, minilm_tok, facts(task, labels, 64), train=False)
    preds = task.decode(examples, eval_f, _oracle_outputs(train_f, len(labels), garbage_continuations=True), facts(task, labels))
    assert [t for t, _ in preds[0]] == ["B-ORG", "O"]


def test_split_words_keeps_character_offsets():
    text = "Dr. Müller-Lüdenscheidt visited São Paulo, didn't he?"
    for word, s, e in split_words(text):
        assert text[s:e] == word
    assert [w for w, _, _ in split_words("New York's mayor")] == ["New", "York's", "mayor"]
