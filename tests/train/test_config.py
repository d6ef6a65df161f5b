import pytest

from flowgen.cli import main
from flowgen.errors import ConfigError
from flowgen.train.config import TrainConfig, load_recipe, parse_recipe
from flowgen.train.tasks import get_task, task_names

from .conftest import REPO

RECIPES = sorted((REPO / "recipes").glob("*.yaml"))


def _raw(**sections):
    raw = {"task": "toy2d", "model": {}, "train": {}, "task_args": {}}
    raw.update(sections)
    return raw


@pytest.mark.parametrize("recipe", RECIPES, ids=[p.name for p in RECIPES])
def test_shipped_recipes_parse(recipe):
    parsed = load_recipe(recipe)
    assert parsed.task in task_names()
    assert parsed.train.output_dir
    assert main(["train", str(recipe), "--dry-run"]) == 0


def test_shipped_recipes_exist():
    names = {p.name for p in RECIPES}
    assert {"toy2d_icfm.yaml", "toy2d_moons_otcfm.yaml"} <= names


@pytest.mark.parametrize(
    "raw, key",
    [
        ({**_raw(), "trian": {}}, "'trian'"),
        (_raw(train={"lr_warmup": 10}), "'lr_warmup'"),
        (_raw(model={"width": 64}), "'width'"),
        (_raw(task_args={"sorce": "normal"}), "'sorce'"),
    ],
)
def test_unknown_keys_are_named_with_the_valid_ones(raw, key):
    with pytest.raises(ConfigError, match=key) as err:
        parse_recipe(raw, source="r.yaml")
    assert "valid keys are" in str(err.value)
    assert str(err.value).startswith("r.yaml")


def test_misspelling_gets_a_suggestion():
    with pytest.raises(ConfigError, match="did you mean 'warmup'"):
        parse_recipe(_raw(train={"wramup": 10}))


@pytest.mark.parametrize(
    "train, message",
    [
        ({"steps": 1.5}, "steps must be an integer"),
        ({"lr": "fast"}, "lr must be a number"),
        ({"mixed_precision": "fp8"}, "mixed_precision must be one of"),
        ({"tensorboard": "yes"}, "tensorboard must be true or false"),
        ({"betas": [0.9]}, "betas must have 2 entries"),
        ({"steps": 0}, "steps must be >= 1"),
        ({"ema_decay": 1.0}, "ema_decay must lie in"),
        ({"batch_size": 30, "grad_accum": 4}, "not divisible"),
    ],
)
def test_bad_values(train, message):
    with pytest.raises(ConfigError, match=message):
        parse_recipe(_raw(train=train))


def test_yaml_style_numbers_and_lists():
    recipe = parse_recipe(_raw(train={"lr": "1e-3", "betas": [0.9, 0.95], "clip": 0}))
    assert recipe.train.lr == 1e-3 and isinstance(recipe.train.clip, float)
    assert recipe.train.betas == (0.9, 0.95)


def test_unknown_task_lists_the_known_ones():
    with pytest.raises(ConfigError, match="known tasks: .*toy2d"):
        get_task("toy3d")


def test_round_trip_through_yaml(tmp_path):
    recipe = load_recipe(RECIPES[0])
    path = tmp_path / "again.yaml"
    path.write_text(recipe.to_yaml())
    assert load_recipe(path) == recipe


def test_default_output_dir_is_the_recipe_name(tmp_path):
    path = tmp_path / "my_run.yaml"
    path.write_text("task: toy2d\n")
    assert load_recipe(path).train.output_dir == "runs/my_run"
    assert load_recipe(path).train == TrainConfig(output_dir="runs/my_run")


def test_cli_reports_config_errors_in_one_line(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("task: toy2d\ntrain:\n  stpes: 10\n")
    assert main(["train", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "'stpes'" in err and "did you mean 'steps'" in err


def test_cli_without_recipe_or_resume_explains(capsys):
    assert main(["train"]) == 2
    assert "give a recipe file" in capsys.readouterr().err


def test_cli_reports_invalid_yaml(tmp_path, capsys):
    path = tmp_path / "broken.yaml"
    path.write_text("task: [toy2d\n")
    assert main(["train", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not valid YAML" in err


def test_help_has_examples(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert "torchrun --standalone --nproc_per_node 2" in out
    assert "--resume auto" in out
