"""Recipes map 1:1 onto the typed config; overrides and errors name their keys."""

import pytest
from conftest import write

from ftkit.config import RunConfig, resolve
from ftkit.errors import FtkitError
from ftkit.recipes import builtin_recipes


def test_builtin_recipes_validate():
    names = builtin_recipes()
    assert {"ner-demo", "ner-conll2003"} <= set(names)
    for name in names:
        cfg, _ = resolve(None, name, {}, [])
        assert isinstance(cfg, RunConfig)


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
