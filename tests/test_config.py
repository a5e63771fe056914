"""Recipes map 1:1 onto the typed config; overrides and errors name their keys."""

from pathlib import Path

import pytest
import yaml
from conftest import write

from ftkit.config import resolve
from ftkit.errors import FtkitError
from ftkit.recipes import builtin_recipes


def test_builtin_recipes_validate_and_round_trip():
    from ftkit.config import dump_yaml, validate
    from ftkit.recipes import load_yaml, resolve_packaged
    from ftkit.tasks import get_task_class

    names = builtin_recipes()
    assert {"ner-demo", "ner-conll2003", "classification-demo", "relation-demo", "qa-demo",
            "translation-demo"} <= set(names)
    for name, path in names.items():
        cfg, source = resolve(None, name, {}, [])
        assert source == str(path) and cfg.task in name
        # task_options are the task's own typed options, every key of the file kept
        assert isinstance(cfg.task_options, get_task_class(cfg.task).Options)
        written = load_yaml(path).get("task_options") or {}
        assert {k: getattr(cfg.task_options, k) is not None for k in written} == {k: v is not None for k, v in
                                                                                  written.items()}
        # the resolved recipe (run folder's recipe.yaml) validates to the same config
        assert validate(yaml.safe_load(dump_yaml(cfg)), "again") == cfg
        # demo recipes read bundled samples that exist in the package
        for split in ("train", "validation", "test"):
            p = getattr(cfg.data, split)
            if p and p.startswith("ftkit:"):
                real = resolve_packaged(p)
                assert any(Path(real + suffix).exists() for suffix in ("", ".en")), (name, p)


def test_task_alone_uses_default_recipe():
    cfg, source = resolve("ner", None, {}, [])
    assert source.endswith("ner-demo.yaml")
    assert cfg.model == "minilm" and cfg.data.train.startswith("ftkit:samples/")


def test_flags_and_set_override_the_recipe():
    cfg, _ = resolve("ner", "ner-demo", {"training.epochs": 2.0, "model": "x", "data.test": None},
                     ["training.learning_rate=3e-4", "task_options.label_all_subtokens=true", "data.train=a.txt"])
    assert cfg.training.epochs == 2.0 and cfg.model == "x"
    assert cfg.training.learning_rate == pytest.approx(3e-4)
    assert cfg.task_options.label_all_subtokens is True
    assert cfg.data.train == "a.txt"
    assert cfg.data.test is not None  # None means "flag not given"


@pytest.mark.parametrize(
    "body, fragment",
    [
        ("task: ner\ntraining:\n  epochz: 3\n", "unknown key 'training.epochz'"),
        ("task: ner\ntraining:\n  epochs: many\n", "'training.epochs': Input should be a valid number"),
        ("task: ner\nfoo: 1\n", "unknown key 'foo'"),
        ("task: ner\ndata: [1, 2]\n", "'data'"),
        ("- just\n- a list\n", "a recipe must be a mapping"),
        ("task: ner\ntraining: {epochs: 3\n", "invalid YAML"),
        ("task: !!python/object/apply:os.system ['echo hi']\n", "invalid YAML"),
    ],
)
def test_bad_recipes(tmp_path, body, fragment):
    p = write(tmp_path / "r.yaml", body)
    with pytest.raises(FtkitError) as e:
        resolve(None, str(p), {}, [])
    assert fragment in str(e.value) and str(p) in str(e.value)


def test_task_options_are_typed_by_the_task():
    from ftkit.tasks import make_task

    with pytest.raises(FtkitError, match=r"unknown key 'task_options.tag_schema'"):
        make_task("ner", {"tag_schema": "iob1"})
    with pytest.raises(FtkitError, match=r"'task_options.tag_scheme'"):
        make_task("ner", {"tag_scheme": "bilou"})


def test_unknown_task_and_recipe():
    with pytest.raises(FtkitError, match="unknown task 'pos'.*ner"):
        resolve("pos", None, {}, [])
    with pytest.raises(FtkitError, match="unknown recipe 'nope'"):
        resolve(None, "nope", {}, [])
    with pytest.raises(FtkitError, match="--set expects dotted.key=value"):
        resolve("ner", None, {}, ["training.epochs"])


def test_recipe_task_mismatch(tmp_path):
    p = write(tmp_path / "r.yaml", "task: ner\n")
    with pytest.raises(FtkitError, match="recipe is for task 'ner', not 'qa'"):
        resolve("qa", str(p), {}, [])


def test_errors_name_where_the_key_came_from(tmp_path):
    """The same one line from finetune, validate and the Python API, blaming the flag or the file."""
    with pytest.raises(FtkitError) as e:
        resolve("ner", None, {}, ["task_options.tag_shceme=iob1"])
    assert e.value.one_line().startswith("--set task_options.tag_shceme=iob1: unknown key 'task_options.tag_shceme' "
                                         "(hint: did you mean 'task_options.tag_scheme'?")
    p = write(tmp_path / "r.yaml", "task: ner\ntask_options:\n  tag_shceme: iob1\n")
    with pytest.raises(FtkitError) as e:
        resolve(None, str(p), {}, [])
    assert e.value.one_line().startswith(f"{p}: unknown key 'task_options.tag_shceme'")
    with pytest.raises(FtkitError) as e:
        resolve("ner", None, {"training.epochs": -1.0}, [], flag_names={"training.epochs": "--epochs"})
    assert e.value.one_line().startswith("--epochs: 'training.epochs': Input should be greater than 0")

    import ftkit

    with pytest.raises(FtkitError, match=r"^task_options.tag_shceme='iob1': unknown key"):
        ftkit.validate("ner", train="x.conll", overrides={"task_options.tag_shceme": "iob1"})


def test_cli_finetune_and_validate_give_the_same_line(tmp_path):
    from typer.testing import CliRunner

    from ftkit.cli import app

    train = write(tmp_path / "t.conll", "Paris B-LOC\n")
    lines = []
    for cmd in ("finetune", "validate"):
        r = CliRunner().invoke(app, [cmd, "--task", "ner", "--train", str(train), "--set", "task_options.tag_shceme=iob1"])
        assert r.exit_code == 2
        lines.append([x for x in r.stderr.splitlines() if x.startswith("error:")])
    assert lines[0] == lines[1] and len(lines[0]) == 1 and "--set task_options.tag_shceme=iob1" in lines[0][0]


def test_yaml_no_is_the_no_strategy(tmp_path):
    """YAML 1.1 reads an unquoted `no` as false: `--set training.eval_strategy=no` and a recipe's
    `eval_strategy: no` still mean the strategy "no"."""
    assert resolve("ner", None, {}, ["training.eval_strategy=no"])[0].training.eval_strategy == "no"
    p = write(tmp_path / "r.yaml", "task: ner\ntraining:\n  eval_strategy: no\n")
    assert resolve(None, str(p), {}, [])[0].training.eval_strategy == "no"


def test_lora_from_the_command_line_takes_the_lora_learning_rate(tmp_path):
    """--peft lora on a recipe tuned for full fine-tuning uses peft.learning_rate (1e-3, measured on SST-2),
    unless the user sets a rate; a recipe that turns LoRA on itself keeps its own rate."""
    demo, _ = resolve("classification", None, {})
    full = demo.training.learning_rate
    assert full < 1e-3 and demo.peft.method == "none"
    lora, _ = resolve("classification", None, {"peft.method": "lora"})
    assert lora.training.learning_rate == pytest.approx(1e-3) and lora.peft.learning_rate == pytest.approx(1e-3)
    mine, _ = resolve("classification", None, {"peft.method": "lora", "training.learning_rate": 2e-4})
    assert mine.training.learning_rate == pytest.approx(2e-4)
    via_set, _ = resolve("classification", None, {"peft.method": "lora"}, ["training.learning_rate=3e-4"])
    assert via_set.training.learning_rate == pytest.approx(3e-4)
    other, _ = resolve("classification", None, {"peft.method": "lora"}, ["peft.learning_rate=5e-4"])
    assert other.training.learning_rate == pytest.approx(5e-4)
    off, _ = resolve("classification", None, {"peft.method": "lora"}, ["peft.learning_rate=null"])
    assert off.training.learning_rate == pytest.approx(full)
    recipe = write(tmp_path / "r.yaml", "task: classification\npeft: {method: lora}\ntraining: {learning_rate: 3.0e-4}\n")
    own, _ = resolve(None, str(recipe), {})
    assert own.training.learning_rate == pytest.approx(3e-4)
    # the resolved recipe (recipe.yaml of the run) gives the same rate again
    from ftkit.config import dump_yaml

    again = write(tmp_path / "again.yaml", dump_yaml(lora))
    assert yaml.safe_load(again.read_text())["training"]["learning_rate"] == pytest.approx(1e-3)
    assert resolve(None, str(again), {})[0].training.learning_rate == pytest.approx(1e-3)
    with pytest.raises(FtkitError, match="peft.learning_rate"):
        resolve("classification", None, {"peft.method": "lora"}, ["peft.learning_rate=-1"])
