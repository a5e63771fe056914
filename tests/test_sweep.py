"""The experiment loop: ftkit sweep (pruning, test scored once, kill -9 and --resume, bad input), ftkit compare,
ftkit report (self-contained, escaped, rendered in headless Chromium)."""

import html.parser
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import SAMPLES
from typer.testing import CliRunner

from ftkit.cli import app

FTKIT = [sys.executable, "-m", "ftkit"]
SPACE = "training.learning_rate: {float: [1.0e-4, 1.0e-2], log: true}\ntraining.warmup_ratio: {float: [0, 0.2]}\n"
STEPS = ["--max-steps", "6", "--batch-size", "8", "--set", "training.eval_strategy=steps",
         "--set", "training.eval_steps=2", "--set", "training.logging_steps=1"]


def _sentences(n, source="train.txt"):
    blocks = [b for b in (SAMPLES / source).read_text().split("\n\n") if b.strip() and "DOCSTART" not in b]
    return "\n\n".join(blocks[:n]) + "\n"


@pytest.fixture(scope="module")
def data(tmp_path_factory, tiny_models):
    d = tmp_path_factory.mktemp("sweep-data")
    (d / "train.txt").write_text(_sentences(32))
    (d / "dev.txt").write_text(_sentences(16, "validation.txt"))
    (d / "test.txt").write_text(_sentences(16, "test.txt"))
    (d / "space.yaml").write_text(SPACE)
    flags = {"model": str(tiny_models("bert")), "train": str(d / "train.txt"), "validation": str(d / "dev.txt"),
             "test": str(d / "test.txt")}
    return d, flags


def _cli_flags(flags):
    return [x for k, v in flags.items() for x in (f"--{k}", v)]


#: the Ctrl-C handler before and after the pruned sweep (the default one, or SIG_IGN where the tests run as a
#: background job: what the sweep found is what it must leave)
_SIGINT: dict = {}


@pytest.fixture(scope="module")
def pruned_sweep(data):
    """3 trials through the Python API; a pruner that stops every trial after the first at its first
    evaluation, so pruning is certain. Every eval_<split>.json write is recorded in order."""
    import optuna

    import ftkit.engine.run_folder as run_folder
    from ftkit.sweep import sweep

    class PruneAfterFirst(optuna.pruners.BasePruner):
        def prune(self, study, trial):
            return trial.number >= 1

    d, flags = data
    out = d / "pruned-sweep"
    writes = []
    real = run_folder.write_eval
    _SIGINT["before"] = signal.getsignal(signal.SIGINT)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(run_folder, "write_eval", lambda run_dir, m: writes.append((Path(run_dir).name, m["split"]))
                   or real(run_dir, m))
        result = sweep("ner", space=d / "space.yaml", trials=3, output=out, pruner=PruneAfterFirst(),
                       max_steps=6, batch_size=8, overrides={"training.eval_strategy": "steps",
                                                             "training.eval_steps": 2, "training.logging_steps": 1},
                       **flags)
    _SIGINT["after"] = signal.getsignal(signal.SIGINT)
    return out, result, writes


def test_pruned_trials_stop_at_their_evaluation_and_only_the_best_is_tested(pruned_sweep):
    import optuna

    out, result, writes = pruned_sweep
    meta = json.loads((out / "sweep.json").read_text())
    assert [(t["folder"], t["state"]) for t in meta["trials"]] == [
        ("trial-000", "complete"), ("trial-001", "pruned"), ("trial-002", "pruned")]
    assert result.best_trial == 0 and meta["best_folder"] == "trial-000"
    for t in meta["trials"][1:]:
        assert (t["steps"], t["max_steps"]) == (2, 6)  # stopped at the first evaluation of 6 planned steps
        logged = [json.loads(x)["step"] for x in (out / t["folder"] / "train_log.jsonl").read_text().splitlines()]
        assert max(logged) == 2, "no training step after the pruning evaluation"
        assert not (out / t["folder"] / "model").exists() and not (out / t["folder"] / "run.json").exists()
    assert meta["pruning"]["pruned_trials"] == 2 and meta["pruning"]["steps_saved"] == 8
    assert meta["pruning"]["seconds_saved_estimate"] > 0
    assert not list(out.glob("trial-*/checkpoints")), "finished trials keep no checkpoints"
    # the study itself (optuna's own reader) agrees
    study = optuna.load_study(study_name="ftkit-sweep", storage=f"sqlite:///{out / 'study.db'}")
    states = [t.state for t in study.trials]
    assert states == [optuna.trial.TrialState.COMPLETE] + [optuna.trial.TrialState.PRUNED] * 2
    assert list(study.trials[1].intermediate_values) == [2]
    assert study.best_trial.value == pytest.approx(
        json.loads((out / "trial-000" / "eval_validation.json").read_text())["f1"])

    # selection on validation only: every trial wrote validation scores; the one test score came last
    assert writes[-1] == ("trial-000", "test")
    assert all(split == "validation" for _, split in writes[:-1])
    assert [p.parent.name for p in out.glob("trial-*/eval_test.json")] == ["trial-000"]
    assert result.test["f1"] == json.loads((out / "trial-000" / "eval_test.json").read_text())["f1"]
    # the pruned trials' clean exit put the Ctrl-C handler back
    assert _SIGINT["after"] is _SIGINT["before"]
    assert signal.getsignal(signal.SIGINT) is _SIGINT["before"]


def test_best_yaml_is_the_best_trials_recipe_and_reruns_as_is(pruned_sweep):
    from ftkit.config import validate

    out, _, _ = pruned_sweep
    best = yaml.safe_load((out / "best.yaml").read_text())
    assert best == yaml.safe_load((out / "trial-000" / "recipe.yaml").read_text())
    params = json.loads((out / "sweep.json").read_text())["trials"][0]["params"]
    assert best["training"]["learning_rate"] == params["training.learning_rate"]
    assert best["data"]["test"] and validate(best, "best.yaml").training.warmup_ratio == params["training.warmup_ratio"]


def test_compare_shows_every_trial_with_the_searched_keys(pruned_sweep, data):
    out, _, _ = pruned_sweep
    r = CliRunner().invoke(app, ["compare", str(out), "--json"])
    assert r.exit_code == 0, r.stderr
    table = json.loads(r.stdout)
    assert table["differing"] == ["training.learning_rate", "training.warmup_ratio"]
    runs = table["runs"]
    assert [(x["state"], x["best"]) for x in runs] == [("complete", True), ("pruned", False), ("pruned", False)]
    meta = json.loads((out / "sweep.json").read_text())
    for row, trial in zip(runs, meta["trials"]):
        assert row["hyperparameters"] == trial["params"]
        assert row["validation"]["f1"] == pytest.approx(trial["value"] if trial["value"] is not None
                                                        else list(trial["intermediate"].values())[-1])
    first = json.loads((out / "trial-000" / "run.json").read_text())
    assert runs[0]["test"]["f1"] == json.loads((out / "trial-000" / "eval_test.json").read_text())["f1"]
    assert runs[0]["steps"] == first["metrics"]["train_steps"] == 6
    assert runs[0]["parameters"] == first["parameters"] and runs[0]["parameters"]["trainable"] > 0
    text = CliRunner().invoke(app, ["compare", str(out)]).stdout
    assert "learning_rate" in text and "complete (best)" in text
    assert sum(" pruned " in line for line in text.splitlines()) == 2


# ---------------------------------------------------------------------------
# kill -9 in the middle of a trial, then --resume


def _run(args, **kw):
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    return subprocess.run(FTKIT + [str(a) for a in args], capture_output=True, text=True, env=env, timeout=600, **kw)


def test_kill_9_mid_trial_then_resume_keeps_finished_trials_and_reruns_the_interrupted_one(data):
    import optuna
    from optuna.trial import TrialState

    d, flags = data
    out = d / "killed-sweep"
    # 2 trials of 4 steps; no pruning before 2 trials have finished (--startup-trials 2)
    args = ["sweep", "--task", "ner", *_cli_flags(flags), *STEPS, "--max-steps", "4", "--space", d / "space.yaml",
            "--trials", "2", "--startup-trials", "2", "--output", out]
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    proc = subprocess.Popen(FTKIT + [str(a) for a in args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    started = out / "trial-001" / "train_log.jsonl"
    deadline = time.time() + 300
    while not started.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert started.exists(), "the sweep never reached its second trial"
    storage = f"sqlite:///{out / 'study.db'}"
    before = optuna.load_study(study_name="ftkit-sweep", storage=storage).trials
    assert [t.state for t in before] == [TrialState.COMPLETE, TrialState.RUNNING]
    first_run = (out / "trial-000" / "run.json").stat().st_mtime_ns

    # another recipe cannot take the folder over: one line, exit 2, nothing touched
    sweep_json = (out / "sweep.json").read_bytes()
    r = CliRunner().invoke(app, [str(a) for a in args] + ["--resume", "--learning-rate", "0.5"])
    assert r.exit_code == 2 and r.stderr.count("error:") == 1, r.stderr
    assert "different recipe" in r.stderr and "training.learning_rate" in r.stderr
    assert (out / "sweep.json").read_bytes() == sweep_json

    r = _run(["sweep", "--output", out, "--resume"])  # the sweep's own recipe, space and trial count
    assert r.returncode == 0, r.stderr[-2000:]
    after = optuna.load_study(study_name="ftkit-sweep", storage=storage).trials
    assert [t.state for t in after] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]
    assert after[2].params == before[1].params, "the interrupted trial ran again with its parameters"
    assert (out / "trial-000" / "run.json").stat().st_mtime_ns == first_run, "finished trials are kept as they were"
    assert not (out / "trial-001").exists()
    meta = json.loads((out / "sweep.json").read_text())
    assert [t["folder"] for t in meta["trials"]] == ["trial-000", "trial-002"]
    assert meta["trials"][1]["rerun_of"] == 1
    assert (meta["sampler"], meta["pruner"]) == ("tpe", "median")  # the defaults
    assert (out / "best.yaml").exists() and meta["test"]["f1"] >= 0


# ---------------------------------------------------------------------------
# bad input: one line, exit 2, nothing written


BAD_SPACES = {
    "empty": ("", "the space file is empty"),
    "malformed": ("training.learning_rate: {float: [1, 2]\n", "invalid YAML"),
    "not a mapping": ("- training.learning_rate\n", "must map recipe keys"),
    "unknown key": ("training.learning_rat: {float: [1.0e-5, 1.0e-3]}\n", "training.learning_rat: not a recipe key"),
    "low > high": ("training.learning_rate: {float: [1.0e-3, 1.0e-5]}\n", "training.learning_rate: low 0.001 is greater"),
    "outside the schema": ("training.warmup_ratio: {float: [0, 1.5]}\n", "training.warmup_ratio"),
    "float for an integer key": ("training.batch_size: {float: [8, 32]}\n", "training.batch_size: this key takes integers"),
    "log of zero": ("training.learning_rate: {float: [0, 1.0e-3], log: true}\n", "a log range needs low > 0"),
    "empty choice": ("training.batch_size: {choice: []}\n", "choice needs a non-empty list"),
    "unknown task option": ("task_options.tag_schema: {choice: [iob1]}\n", "did you mean 'task_options.tag_scheme'"),
}


@pytest.mark.parametrize("case", list(BAD_SPACES))
def test_a_bad_space_file_is_one_line_naming_the_key(case, tmp_path):
    text, expected = BAD_SPACES[case]
    space = tmp_path / "space.yaml"
    space.write_text(text)
    out = tmp_path / "sweep"
    r = CliRunner().invoke(app, ["sweep", "--task", "ner", "--space", str(space), "--trials", "2", "--output", str(out)])
    assert r.exit_code == 2, r.output
    assert r.stderr.count("error:") == 1 and r.stderr.strip().count("\n") <= 1, r.stderr
    assert expected in r.stderr and "space.yaml" in r.stderr, r.stderr
    assert not out.exists()


@pytest.mark.parametrize("args, expected", [
    (["--trials", "0"], "--trials must be at least 1"),
    (["--trials", "2", "--sampler", "grid"], "--sampler must be tpe or random"),
    (["--trials", "2", "--set", 'training.eval_strategy="no"'], "eval_strategy is 'no'"),
    (["--trials", "2", "--set", "data.validation=null"], "has none"),
])
def test_bad_sweep_options_are_one_line(args, expected, tmp_path):
    (tmp_path / "space.yaml").write_text(SPACE)
    out = tmp_path / "sweep"
    r = CliRunner().invoke(app, ["sweep", "--task", "ner", "--space", str(tmp_path / "space.yaml"), *args,
                                 "--output", str(out)])
    assert r.exit_code == 2 and r.stderr.count("error:") == 1 and expected in r.stderr, r.stderr
    assert not out.exists()


def test_an_existing_folder_needs_resume_and_a_run_folder_is_no_sweep(tmp_path):
    (tmp_path / "space.yaml").write_text(SPACE)
    out = tmp_path / "sweep"
    out.mkdir()
    (out / "run.json").write_text("{}")
    base = ["sweep", "--task", "ner", "--space", str(tmp_path / "space.yaml"), "--trials", "2", "--output", str(out)]
    r = CliRunner().invoke(app, base)
    assert r.exit_code == 2 and "exists and is not empty" in r.stderr and "--resume" in r.stderr
    r = CliRunner().invoke(app, base + ["--resume"])
    assert r.exit_code == 2 and "not a sweep folder" in r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["run.json"]


# ---------------------------------------------------------------------------
# the report


XSS = "<script>document.title='pwned'</script>"


@pytest.fixture(scope="module")
def runs(data, tmp_path_factory, tiny_models):
    """A NER run, and a classification run whose texts and a label contain markup."""
    from ftkit.api import finetune

    d, flags = data
    ner = finetune("ner", output=d / "ner-run", max_steps=6, batch_size=8, learning_rate=3e-3, **flags).run_dir
    records = [{"text": f"{XSS} a fine film number {i}" if i % 2 else f"{XSS} an <i>awful</i> film {i}",
                "label": "pos" if i % 2 else "<b>neg</b>"} for i in range(24)]
    jsonl = d / "reviews.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in records))
    cls = finetune("classification", model=flags["model"], train=str(jsonl), validation=str(jsonl), test=str(jsonl),
                   output=d / "cls-run", max_steps=4, batch_size=8).run_dir
    return ner, cls


class _Page(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.images, self.links = [], [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        if tag == "img":
            self.images.append(a.get("src", ""))
        for key in ("src", "href", "action"):
            if key in a and tag != "img":
                self.links.append(a[key])


def test_report_is_one_self_contained_page_with_the_data_escaped(pruned_sweep, runs, tmp_path):
    import base64
    import xml.etree.ElementTree as ET

    ner, cls = runs
    out = tmp_path / "report.html"
    r = CliRunner().invoke(app, ["report", str(pruned_sweep[0]), str(ner), str(cls), "--output", str(out)])
    assert r.exit_code == 0, r.stderr
    page = out.read_text()
    parsed = _Page()
    parsed.feed(page)
    assert "script" not in parsed.tags and "link" not in parsed.tags and not parsed.links
    assert "http://" not in page.replace("http://www.w3.org", "") and "https://" not in page
    assert parsed.images and all(src.startswith("data:image/svg+xml;base64,") for src in parsed.images)
    for src in parsed.images:
        ET.fromstring(base64.b64decode(src.split(",", 1)[1]))  # each plot is a whole SVG document
    assert "&lt;script&gt;document.title=" in page and "&lt;b&gt;neg&lt;/b&gt;" in page and XSS not in page


def test_report_of_a_run_without_eval_results_is_refused(runs, tmp_path):
    ner, _ = runs
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "recipe.yaml").write_text((ner / "recipe.yaml").read_text())
    no_scores = tmp_path / "no-scores"
    no_scores.mkdir()
    meta = json.loads((ner / "run.json").read_text())
    meta["metrics"] = {"train_loss": 1.0, "train_steps": 6}
    (no_scores / "run.json").write_text(json.dumps(meta))
    for folder, expected in ((unfinished, "has not finished"), (no_scores, "no eval results")):
        for cmd in (["report", str(ner), str(folder), "--output", str(tmp_path / "r.html")], ["compare", str(folder)]):
            r = CliRunner().invoke(app, cmd)
            assert r.exit_code == 2 and r.stderr.count("error:") == 1 and expected in r.stderr, r.stderr
    assert not (tmp_path / "r.html").exists()


def test_report_in_a_browser(pruned_sweep, runs, tmp_path, browser):
    ner, cls = runs
    out = tmp_path / "report.html"
    r = CliRunner().invoke(app, ["report", str(pruned_sweep[0]), str(ner), str(cls), "--output", str(out)])
    assert r.exit_code == 0, r.stderr
    page = browser.new_page(viewport={"width": 1280, "height": 1400})
    try:
        page.goto(out.resolve().as_uri())
        assert page.title() == "ftkit report", "no script in the data ran"
        rows = page.locator("table.comparison tbody tr")
        assert rows.count() == 5  # three trials, two runs
        assert "complete (best)" in rows.nth(0).inner_text() and "pruned" in rows.nth(1).inner_text()
        header = page.locator("table.comparison thead").inner_text()
        assert "learning_rate" in header and "warmup_ratio" in header
        # every plot is an image the browser decoded: learning curves, 2 sweep plots, a confusion matrix
        images = page.locator("img")
        assert images.count() >= 5
        assert page.evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
        assert page.locator("img[alt='validation f1 against training.learning_rate']").count() == 1
        assert page.locator("img[alt^='confusion matrix']").count() == 1
        # NER error analysis: gold entities of the test sentences are highlighted in the text
        ner_section = page.locator("section.run", has_text=f"Run {os.path.normpath(str(ner))}")
        gold = ner_section.locator("table.errors mark.gold")
        assert gold.count() > 0
        test_words = set((pruned_sweep[0].parent / "test.txt").read_text().split())
        assert all(set(gold.nth(i).inner_text().split()) <= test_words for i in range(min(5, gold.count())))
        assert ner_section.locator("sup.tag.gold").count() == gold.count() or ner_section.locator("sup.tag").count()
        # markup in the data is shown as text, never run or rendered
        cls_section = page.locator("section.run", has_text=f"Run {os.path.normpath(str(cls))}")
        assert XSS in cls_section.inner_text() and "<b>neg</b>" in cls_section.inner_text()
        assert page.locator("section.run b, section.run i").count() == 0
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        assert (tmp_path / "report.png").stat().st_size > 10_000
    finally:
        page.close()


def test_new_commands_help_imports_nothing_heavy():
    code = ("import sys; from typer.testing import CliRunner; from ftkit.cli import app\n"
            "for cmd in ('sweep', 'compare', 'report'):\n"
            "    r = CliRunner().invoke(app, [cmd, '--help']); assert r.exit_code == 0 and 'Usage' in r.output, r.output\n"
            "heavy = [m for m in ('torch', 'transformers', 'optuna', 'mlflow', 'matplotlib', 'jinja2') if m in sys.modules]\n"
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    r = CliRunner().invoke(app, ["sweep", "--help"])
    for flag in ("--recipe", "--learning-rate", "--report-to", "--set", "--space", "--trials", "--resume", "--output"):
        assert flag in r.output, flag


def test_highlight_cuts_overlapping_spans_and_long_contexts():
    from ftkit.report import highlight
    from ftkit.tasks.base import span, text_field

    text = "x" * 1000 + " The Denver Broncos won ." + "y" * 1000
    at = text.index("Denver")
    field = text_field("context", text, [span(at + 7, at + 14, "gold", "gold"),
                                         span(at, at + 14, "predicted", "predicted")])
    pieces = highlight(field)["pieces"]
    texts = [p for p in pieces if "text" in p]
    assert texts[0]["text"] == "… " and texts[-1]["text"] == " …"  # a long context is cut around the spans
    assert sum(len(p["text"]) for p in texts) < 700
    marked = {p["text"]: p["classes"] for p in texts if p["classes"]}
    assert marked == {"Denver ": "predicted", "Broncos": "gold predicted"}
    assert [p["tag"] for p in pieces if "tag" in p] == ["gold", "predicted"]  # both spans end after "Broncos"
