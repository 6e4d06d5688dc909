from __future__ import annotations

from pathlib import Path

import pytest

from mlcls.config import Config, load_config
from mlcls.errors import ConfigError

ROOT = Path(__file__).parents[1]


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    config = load_config(path)
    assert config.notes == []  # no key of the file needed a note (a deprecated or ignored setting)


def test_default_yaml_is_the_built_in_default():
    # `mlcls train` with no -c must run exactly what configs/default.yaml documents.
    assert load_config(ROOT / "configs/default.yaml").to_dict() == load_config().to_dict()


def test_default_yaml_is_what_mlcls_config_prints():
    # Each key's help is declared once (config.py); configs/default.yaml is generated from it:
    # after changing a field, regenerate it with `mlcls config > configs/default.yaml`.
    from typer.testing import CliRunner

    from mlcls.cli import app

    result = CliRunner().invoke(app, ["config"])
    assert result.exit_code == 0
    assert result.stdout == (ROOT / "configs/default.yaml").read_text()


def test_every_config_field_has_help():
    import dataclasses

    from mlcls.config import config_help

    for section in dataclasses.fields(Config):
        if section.name in ("notes", "loss"):
            continue
        for f in dataclasses.fields(section.default_factory):
            assert config_help(f"{section.name}.{f.name}"), f"{section.name}.{f.name} has no help"


def test_precedence_defaults_file_set_options(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  epochs: 7\n  lr: 2.0e-5\nmodel:\n  max_length: 64\n")
    config = load_config(path, ["train.epochs=9", "train.batch_size=3"], {"train.epochs": 11, "train.lr": None})
    assert config.train.epochs == 11  # named option beats --set beats file
    assert config.train.batch_size == 3  # --set beats default
    assert config.train.lr == 2e-5  # file beats default; an option left as None does not override
    assert config.model.max_length == 64
    assert config.train.seed == Config().train.seed


def test_yaml_1e_notation_is_a_number(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  lr: 1e-4\n")  # YAML 1.1 reads this as a string
    assert load_config(path).train.lr == 1e-4
    assert load_config(None, ["train.head_lr=5e-3"]).train.head_lr == 5e-3
    # and so for a loss's parameters (they are checked by mlcls/loss_specs.py, not by the config's fields)
    assert load_config(None, ["loss.name=asl", "loss.clip=5e-2"]).loss.params["clip"] == 0.05
    with pytest.raises(ConfigError, match=r"loss.clip: expected a number, got 'tiny'"):
        load_config(None, ["loss.name=asl", "loss.clip=tiny"])


@pytest.mark.parametrize(("text", "overrides", "message"), [
    ("trian:\n  epochs: 1\n", [], "unknown key 'trian'"),
    ("train:\n  epoch: 1\n", [], "unknown key 'train.epoch' (valid: epochs,"),
    ("train:\n  epochs: many\n", [], "train.epochs: expected an integer, got 'many'"),
    ("train:\n  epochs: 0\n", [], "train.epochs must be at least 1"),
    ("model:\n  pooling: max\n", [], "model.pooling: 'max' is not one of mean, cls"),
    ("data:\n  val_fraction: 1.5\n", [], "data.val_fraction must be in [0, 1)"),
    ("", ["model.lexical_c=0"], "model.lexical_c must be above 0"),
    ("loss:\n  name: nope\n", [], "unknown loss 'nope' (valid: bce, weighted, confidence, focal, asl, cb, db,"),
    ("", ["train.epochs"], "expected key=value"),
    ("", ["nosuch.key=1"], "unknown key 'nosuch'"),
    ("", ["model.trust_remote_code=maybe"], "model.trust_remote_code: expected true or false"),
    ("", ["loss.gamma=2"], "loss 'bce' has no parameter 'gamma'"),
    ("train: [1, 2]\n", [], "c.yaml:1: train: expected a mapping"),
    ("data:\n  val_fraction: 0.1\ntrain: 5\n", ["train.epochs=2"], "c.yaml:3: train: expected a mapping of settings, "
                                                                     "got int"),  # not "--set: not a section"
    # numbers that pass every range check and train on NaN
    ("", ["train.lr=.inf"], "train.lr: expected a finite number, got inf"),
    ("", ["model.lexical_c=nan"], "model.lexical_c: expected a finite number, got nan"),
    ("", ["loss.name=focal", "loss.gamma=nan"], "loss.gamma: expected a finite number, got nan"),
    ("", ["loss.name=cb", "loss.beta=1"], "loss.beta of loss 'cb': must be >= 0 and below 1, got 1"),
    ("", ["loss.name=weighted", "loss.mode=effective_number", "loss.beta=1"], "must be >= 0 and below 1, got 1"),
    ("", ["loss.name=ntr_focal", "loss.lambda=0"], "loss.lambda of loss 'ntr_focal': must be above 0, got 0"),
    ("", ["loss.name=asl", "loss.gamma_neg=-1"], "loss.gamma_neg of loss 'asl': must be >= 0, got -1"),
    # the loss registry's errors about a file's value name the file and the line
    ("loss:\n  name: focal\n  gamm: 2\n", [], "c.yaml:3: loss 'focal' has no parameter 'gamm'"),
    ("loss:\n  name: focall\n", [], "c.yaml:2: unknown loss 'focall'"),
    ("train:\n  epochs: [1\n", [], "invalid YAML"),
])
def test_config_errors_are_clear(tmp_path, text, overrides, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides)
    assert message in str(info.value)


def test_loss_params_of_the_file_are_dropped_with_a_note_when_the_loss_changes(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("loss:\n  name: weighted\n  mode: inverse\n")
    assert load_config(path).loss.params["mode"] == "inverse"
    config = load_config(path, [], {"loss.name": "bce"})
    assert config.loss.params == {}
    assert config.notes and "mode" in config.notes[0] and "'weighted'" in config.notes[0]


def test_loss_params_of_a_file_that_names_no_loss_go_with_the_loss_chosen(tmp_path):
    # They were dropped with a note blaming loss 'bce', and focal trained with its default gamma.
    path = tmp_path / "c.yaml"
    path.write_text("loss:\n  gamma: 3\n")
    config = load_config(path, [], {"loss.name": "focal"})
    assert config.loss.params["gamma"] == 3.0 and not config.notes


@pytest.mark.parametrize(("given", "value"), [
    ("data.text_separator= ", " "),  # blank: it was "", title and body glued together
    ("output.name=exp #2", "exp #2"),  # YAML read a comment
    ("data.label_separator=|", "|"),  # a block scalar: ""
    ("data.label_separator=-", "-"),  # a list: [None]
    ("train.epochs=010", 10),  # YAML 1.1's octal: 8
    ("train.epochs=09", 9),  # not octal either: a string
    ("output.name=2024-01-01", "2024-01-01"),  # a date
    ("output.name=1:30", "1:30"),  # base 60: 90
    ("output.name=!!str 2024", "2024"),  # YAML's own way to say "a string"
    ("train.lr=1e-4", 1e-4),
    ("train.lr=0.0005", 5e-4),
    ("model.trust_remote_code=true", True),
    ("data.validation=null", None),
    ("output.name='quoted'", "quoted"),
    ("output.name=001", "001"),  # a text key: the run 001, as `--name 001` (it was "expected a string, got 1")
    ("output.name=2024", "2024"),
    ("data.id_field=7", "7"),
    ("data.label_separator=yes", "yes"),  # not the boolean YAML 1.1 reads
    ("data.validation=0.5", "0.5"),  # str | None: a file named so
])
def test_set_values_are_what_was_typed(given, value):
    key = given.split("=")[0]
    section, name = key.split(".")
    assert getattr(getattr(load_config(None, [given]), section), name) == value


def test_missing_config_file():
    with pytest.raises(ConfigError, match="config file not found"):
        load_config("does/not/exist.yaml")


def test_quantile_scale_takes_a_number_or_auto():
    assert load_config(overrides=["threshold.quantile_scale=auto"]).threshold.quantile_scale == "auto"
    assert load_config(overrides=["threshold.quantile_scale=0.5"]).threshold.quantile_scale == 0.5
    with pytest.raises(ConfigError, match=r"threshold.quantile_scale: expected a number or auto, got 'fast'"):
        load_config(overrides=["threshold.quantile_scale=fast"])
    with pytest.raises(ConfigError, match="threshold.quantile_scale must be positive, or auto"):
        load_config(overrides=["threshold.quantile_scale=-1"])


def test_quantile_scale_auto_with_a_rule_that_has_no_scale_is_a_note():
    assert load_config(overrides=["threshold.quantile_scale=auto"]).notes == [
        "threshold.quantile_scale auto: rule per_label has no scale to choose (prior_quantile, hybrid and auto have)"]
    assert load_config(overrides=["threshold.quantile_scale=auto", "threshold.rule=hybrid"]).notes == []


@pytest.mark.parametrize(("text", "where"), [
    ("train: {epochs: 2}\nmodel: {dropout: 0.1}\ntrain: {lr: 0.1}\n", "3: invalid YAML: 'train'"),
    ("train:\n  epochs: 2\n  lr: 0.1\n  epochs: 3\n", "4: invalid YAML: 'epochs'"),
])
def test_a_key_named_twice_is_an_error_not_dropped(tmp_path, text, where):
    """yaml.safe_load keeps the second of two equal keys: the first section (or value) vanished silently."""
    path = tmp_path / "twice.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="is named twice") as caught:
        load_config(path)
    assert f"twice.yaml:{where}" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_an_error_in_a_files_value_names_the_file_and_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: {dropout: 0.1}\ntrain:\n  lr: 0.1\n  epochs: three\n")
    with pytest.raises(ConfigError, match=r"c\.yaml:4: train\.epochs: expected an integer, got 'three'"):
        load_config(path)
    path.write_text("train:\n  lr: 0.1\n  epoch: 3\n")
    with pytest.raises(ConfigError, match=r"c\.yaml:3: unknown key 'train\.epoch'"):
        load_config(path)
    path.write_text("train:\n  epochs: 0\n")
    with pytest.raises(ConfigError, match=r"c\.yaml:2: train\.epochs must be at least 1"):
        load_config(path)
    # a --set value replaced the file's: the error is the --set value's, with no file in front
    with pytest.raises(ConfigError, match=r"^train\.epochs must be at least 1$"):
        load_config(path, ["train.epochs=-1"])
