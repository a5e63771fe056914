"""The command line: instant help, and bad input as one line, exit 2, nothing left behind."""

import os
import subprocess
import sys

import pytest
from conftest import SAMPLES, write

FTKIT = [sys.executable, "-m", "ftkit"]


def run(args, cwd=None, stdin=None):
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    return subprocess.run(FTKIT + args, capture_output=True, text=True, cwd=cwd, input=stdin, env=env, timeout=600)


def test_help_does_not_import_heavy_libraries():
    code = ("import sys; from typer.testing import CliRunner; from ftkit.cli import app; "
            "r = CliRunner().invoke(app, ['finetune', '--help']); assert r.exit_code == 0, r.output; "
            "heavy = [m for m in ('torch', 'transformers', 'datasets', 'sklearn') if m in sys.modules]; "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.parametrize("cmd", [[], ["finetune"], ["eval"], ["export"], ["predict"], ["validate"], ["recipes"]])
def test_every_help_renders_as_written(cmd):
    """(How fast help is, is measured by bench/cli_latency.sh, not timed here.)"""
    r = run(cmd + ["--help"])
    assert r.returncode == 0 and r.stdout.startswith("Usage: ftkit")
    assert "╭" not in r.stdout  # plain text, no boxes
    if cmd == ["finetune"]:
        assert "[default: runs/<task>-<time>]" in r.stdout  # brackets are text, not markup
        assert "ner | relation | classification | qa | translation" in " ".join(r.stdout.split())


def test_closed_pipe_ends_quietly():
    p = subprocess.run("set -o pipefail; " + " ".join(FTKIT) + " recipes | head -1", shell=True, executable="/bin/bash",
                       capture_output=True, text=True, env=dict(os.environ, HF_HUB_OFFLINE="1"), timeout=120)
    assert p.stderr == "" and p.returncode == 141 and p.stdout.count("\n") == 1


def test_usage_errors_are_one_plain_line():
    r = run(["finetune", "--task", "translation", "--source-langs", "en"])
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.splitlines() == ["error: No such option: --source-langs (Possible options: --source-lang, "
                                     "--target-lang) (hint: see 'ftkit finetune --help')"]
    r = run(["finetune", "--epochs", "many"])
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1 and "Invalid value for '--epochs'" in r.stderr


def test_recipes_lists_builtins():
    r = run(["recipes"])
    assert "ner-demo" in r.stdout and "ner-conll2003" in r.stdout


def _valid_train(tmp_path):
    return write(tmp_path / "ok.conll", "Paris B-LOC\nis O\n\nBob B-PER\nruns O\n")


NO_EVAL = ["--set", "data.validation=null", "--set", "data.test=null"]

BAD_CASES = {
    # name: (files to write {name: text|bytes}, extra args, expected fragment, expected location)
    "empty file": ({"train.conll": ""}, [], "no sentences found", "train.conll"),
    "tagless line": ({"train.conll": "Paris B-LOC\nis\n"}, [], "expected a token and a tag column", "train.conll:2"),
    "invalid tag": ({"train.conll": "Paris B-LOC\nis Q-X\n"}, [], "invalid tag 'Q-X'", "train.conll:2"),
    "all O": ({"train.conll": "a O\nb O\n"}, [], "no entities", None),
    "undecodable": ({"train.conll": b"Paris B-LOC\n\nM\xfcnchen B-LOC\n"}, [], "not valid utf-8", "train.conll:3"),
    "bad jsonl": ({"train.jsonl": '{"tokens": ["a"], "tags": ["B-X"]}\n{oops\n'}, [], "invalid JSON", "train.jsonl:2"),
    "missing file": ({}, [], "file not found", "train.conll"),
    "unseen eval label": ({"train.conll": "Paris B-LOC\n", "dev.conll": "Acme B-ORG\n"},
                          ["--validation", "@dev.conll"], "entity type 'ORG'", "dev.conll:1"),
    "unknown recipe key": ({"train.conll": "Paris B-LOC\n"}, ["--set", "training.epochz=1"],
                           "unknown key 'training.epochz'", None),
    "unknown task option": ({"train.conll": "Paris B-LOC\n"}, ["--set", "task_options.foo=1"],
                            "unknown key 'task_options.foo'", None),
    "wrong type": ({"train.conll": "Paris B-LOC\n"}, ["--batch-size", "0"], "'training.batch_size'", None),
    "missing model": ({"train.conll": "Paris B-LOC\n"}, ["--model", "no-such-org/no-such-model", *NO_EVAL],
                      "model 'no-such-org/no-such-model' not found", None),
    "missing local model": ({"train.conll": "Paris B-LOC\n"}, ["--model", "./nowhere/model", *NO_EVAL], "not found", None),
}


@pytest.mark.parametrize("name", list(BAD_CASES))
def test_bad_input_is_one_line_exit_2_and_no_run_dir(tmp_path, name):
    files, extra, fragment, where = BAD_CASES[name]
    for fname, content in files.items():
        p = tmp_path / fname
        p.write_bytes(content if isinstance(content, bytes) else content.encode())
    train = "train.jsonl" if "train.jsonl" in files else "train.conll"
    extra = [str(tmp_path / a[1:]) if a.startswith("@") else a for a in extra]
    out = tmp_path / "run"
    # the demo recipe supplies validation/test splits unless the case overrides them
    r = run(["finetune", "--task", "ner", "--train", str(tmp_path / train), "--output", str(out), *extra])
    assert r.returncode == 2, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    error_lines = [line for line in lines if line.startswith("error: ")]
    assert len(error_lines) == 1, r.stderr
    assert "Traceback" not in r.stderr
    assert fragment in error_lines[0]
    if where:
        assert where in error_lines[0]
    assert not out.exists()


def test_unknown_task_and_recipe_exit_2():
    r = run(["finetune", "--task", "pos"])
    assert r.returncode == 2 and "unknown task 'pos'" in r.stderr and "Traceback" not in r.stderr
    r = run(["finetune", "--recipe", "nope"])
    assert r.returncode == 2 and "unknown recipe 'nope'" in r.stderr


def test_existing_output_is_not_overwritten(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    r = run(["finetune", "--task", "ner", "--train", str(_valid_train(tmp_path)), "--output", str(out)])
    assert r.returncode == 2 and "--overwrite" in r.stderr
    assert (out / "keep.txt").read_text() == "precious"


def test_eval_and_export_of_a_missing_run(tmp_path):
    r = run(["eval", str(tmp_path / "nothing")])
    assert r.returncode == 2 and "no such run" in r.stderr
    r = run(["export", str(tmp_path / "nothing"), "--output", str(tmp_path / "x")])
    assert r.returncode == 2 and not (tmp_path / "x").exists()


def test_debug_shows_the_traceback(tmp_path):
    r = run(["finetune", "--task", "ner", "--train", str(tmp_path / "missing.conll"), "--debug"])
    assert r.returncode != 0 and "Traceback" in r.stderr


def test_validate_exit_codes_and_problem_lines(tmp_path):
    train = SAMPLES / "train.txt"
    r = run(["validate", "--task", "ner", "--train", str(train)])
    assert r.returncode == 0, r.stdout + r.stderr
    assert "train: " in r.stdout and '"tag_scheme": "iob1"' in r.stdout
    assert "duplicate examples" in r.stdout  # CoNLL repeats sports-table lines
    r = run(["validate", "--task", "ner", "--train", str(train), "--strict"])
    assert r.returncode == 1

    bad = write(tmp_path / "bad.conll", "x O\ny\n")
    unseen = write(tmp_path / "unseen.conll", "Paris B-LOC\n\nAcme B-FOO\n")
    r = run(["validate", "--task", "ner", "--train", str(train), "--validation", str(bad), "--test", str(unseen)])
    assert r.returncode == 2
    assert f"error: {bad}:2: expected a token and a tag column" in r.stdout
    assert f"{unseen}:3: entity type 'FOO'" in r.stdout


def test_validate_counts_inputs_longer_than_the_window(tmp_path):
    long = write(tmp_path / "long.conll", "\n".join(f"w{i} O" for i in range(300)) + "\nParis B-LOC\n")
    r = run(["validate", "--task", "ner", "--train", str(long), "--model", "minilm",
             "--set", "training.max_length=64"])
    assert r.returncode == 0, r.stderr
    assert '"longer_than_window": 1' in r.stdout and "split into windows" in r.stdout
