"""NER prediction with `--set task_options.aggregation=simple`: the entities of transformers'
`pipeline("token-classification", aggregation_strategy="simple")`, from ftkit's batched loop."""

import json

import pytest
from conftest import SAMPLES
from typer.testing import CliRunner

from ftkit.cli import app as cli_app
from ftkit.tasks.ner import group_subtokens, split_words


@pytest.fixture(scope="module")
def ner_run(tiny_models, tmp_path_factory):
    import ftkit

    root = tmp_path_factory.mktemp("ner-aggregation")
    # a tiny random model trained 3 steps: sub-tokens of one word often get different labels, which is where
    # the two aggregations part
    ftkit.finetune("ner", model=str(tiny_models("bert")), train=str(SAMPLES / "train.txt"), output=root / "run",
                   max_steps=3, batch_size=8, overrides={"data.validation": None, "data.test": None})
    return root / "run"


def sentences(n: int) -> list[str]:
    from ftkit.data.conll import read_conll

    out = [" ".join(s.tokens) for s in read_conll(str(SAMPLES / "test.txt"))][:n]
    # words the tiny vocabulary splits into several pieces, punctuation inside words, extra spaces
    return out + ["Unbelievably , Schwarzenegger-Kennedy visited  Lyon-Saint-Exupery in 1996-08-22 .",
                  "U.S. officials met E.U. envoys ."]


def predict_cli(run, lines: list[str], tmp_path, *extra: str) -> list[dict]:
    path = tmp_path / "inputs.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    r = CliRunner().invoke(cli_app, ["predict", str(run), "--input", str(path), *extra])
    assert r.exit_code == 0, r.output
    return [json.loads(line) for line in r.stdout.splitlines()]


def test_simple_aggregation_gives_the_pipelines_entities(ner_run, tmp_path):
    from transformers import AutoTokenizer, pipeline

    # sentences within the model's window (a longer one is windowed by ftkit, chunked its own way by the pipeline)
    tokenizer = AutoTokenizer.from_pretrained(str(ner_run / "model"))
    lines = [s for s in sentences(60) if len(tokenizer(s)["input_ids"]) <= tokenizer.model_max_length]
    assert len(lines) > 40
    ours = predict_cli(ner_run, lines, tmp_path, "--set", "task_options.aggregation=simple")
    pipe = pipeline("token-classification", model=str(ner_run / "model"), aggregation_strategy="simple",
                    device="cpu")
    theirs = pipe(lines)
    assert len(ours) == len(theirs) == len(lines)
    n_entities = inside_words = 0
    for line, o, t in zip(lines, ours, theirs):
        got = [(e["label"], e["start"], e["end"]) for e in o["entities"]]
        want = [(e["entity_group"], int(e["start"]), int(e["end"])) for e in t]
        assert got == want, line
        assert [e["score"] for e in o["entities"]] == pytest.approx([float(e["score"]) for e in t], abs=2e-4)
        assert all(e["text"] == line[e["start"]:e["end"]] for e in o["entities"])
        n_entities += len(got)
        starts, ends = {s for _, s, _ in split_words(line)}, {e for _, _, e in split_words(line)}
        inside_words += sum(s not in starts or e not in ends for _, s, e in got)
    assert n_entities > 20
    assert inside_words > 0  # the case that makes "simple" differ from ftkit's word-level default is covered

    # the default (words labelled by their first sub-token) is unchanged and differs on those sentences
    default = predict_cli(ner_run, lines, tmp_path)
    assert [d["entities"] for d in default] != [o["entities"] for o in ours]
    for d in default:  # word-level: every entity starts and ends on a word boundary (ftkit's words)
        starts, ends = {s for _, s, _ in split_words(d["text"])}, {e for _, _, e in split_words(d["text"])}
        assert all(e["start"] in starts and e["end"] in ends for e in d["entities"])


def test_long_inputs_are_windowed_in_simple_aggregation_too(ner_run, tmp_path):
    long_line = " ".join(sentences(40))  # longer than the tiny model's 128 positions
    out = predict_cli(ner_run, [long_line], tmp_path, "--set", "task_options.aggregation=simple")[0]
    assert out["text"] == long_line
    ends = [(e["start"], e["end"]) for e in out["entities"]]
    assert ends == sorted(ends) and all(a < b for a, b in ends)
    assert all(b <= c for (_, b), (c, _) in zip(ends, ends[1:]))  # no overlap where windows meet
    assert ends and ends[-1][1] > len(long_line) // 2  # entities past the first window


def test_group_subtokens_follows_the_pipelines_rules():
    pieces = [("B-PER", 0.9, 0, 3), ("I-PER", 0.7, 3, 5), ("B-PER", 0.8, 6, 9),  # B- starts a new group
              ("I-LOC", 0.6, 9, 11),  # an I- of another type starts one too, typed by its own label
              ("O", 0.99, 12, 14), ("I-ORG", 0.5, 15, 18), ("I-ORG", 0.7, 18, 20), ("O", 0.9, 20, 21)]
    got = group_subtokens(pieces)
    assert [(t, s, e) for t, s, e, _ in got] == [("PER", 0, 5), ("PER", 6, 9), ("LOC", 9, 11), ("ORG", 15, 20)]
    assert [round(sc, 4) for *_, sc in got] == [0.8, 0.8, 0.6, 0.6]
    assert group_subtokens([]) == []


def test_bad_task_options_on_predict_are_one_line(ner_run, tmp_path):
    path = tmp_path / "in.txt"
    path.write_text("EU rejects German call .\n", encoding="utf-8")
    for flag, expected in (("task_options.aggregation=bogus", "task_options.aggregation"),
                           ("task_options.nonsense=1", "task_options.nonsense"),
                           ("training.epochs=3", "task options only")):
        r = CliRunner().invoke(cli_app, ["predict", str(ner_run), "--input", str(path), "--set", flag])
        assert r.exit_code != 0
        lines = [x for x in r.output.splitlines() if x.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:") and expected in lines[0], r.output
        assert "Traceback" not in r.output


def test_simple_aggregation_with_a_tokenizer_without_offsets_is_one_clear_error():
    from conftest import facts
    from datasets import Dataset

    from ftkit.errors import FtkitError
    from ftkit.tasks.ner import NerOptions, NerTask

    class SlowTokenizer:  # a Python tokenizer: no character offsets
        is_fast = False

        def num_special_tokens_to_add(self, pair=False):
            return 2

    task = NerTask(NerOptions(aggregation="simple"))
    rows = Dataset.from_list(task.predict_rows([{"text": "EU rejects German call ."}]))
    with pytest.raises(FtkitError, match="fast .*tokenizer.*SlowTokenizer"):
        task.encode(rows, SlowTokenizer(), facts(task, ["O", "B-ORG", "I-ORG"]), train=False)
