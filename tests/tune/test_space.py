"""The search space: read from YAML, checked against the config before any trial (one line naming the file, the line
and the key), and sampled with its conditions kept (a loss parameter only with a loss that takes it)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from mlcls.cli import app
from mlcls.config import load_config
from mlcls.errors import ConfigError
from mlcls.tune.schema import with_values
from mlcls.tune.space_checks import load_space
from tests.conftest import one_line
from tests.tune.conftest import tune_args

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_SPACE = ROOT / "configs" / "spaces" / "reuters.yaml"
BASE = load_config().to_dict()  # the built-in defaults: loss bce, long_text truncate, max_length 128


def space(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return path


def test_the_shipped_space_loads_over_the_reuters_config_with_its_commented_keys_too(tmp_path):
    base = load_config(ROOT / "configs" / "reuters.yaml").to_dict()
    searched = load_space(SHIPPED_SPACE, base)
    assert set(searched.keys) == {"train.lr", "train.head_lr", "train.warmup_ratio", "model.dropout", "loss.name",
                                  "loss.gamma"}
    assert searched.keys[0] == "loss.name"  # drawn before the parameter that depends on it
    # The keys the file shows in comments are a valid space as well (a commented key replaces an active one).
    text = SHIPPED_SPACE.read_text()
    entries = yaml.safe_load(text)
    entries.update(yaml.safe_load("\n".join(re.findall(r"^# ([a-z_]+\.[a-z_]+: [^#\n]*)", text, re.M))))
    assert {"model.head_tokens", "loss.gamma_neg", "threshold.rule"} <= set(entries)
    assert set(load_space(space(tmp_path, yaml.safe_dump(entries)), base).keys) == set(entries)


def test_ranges_and_choices_become_the_right_kinds(tmp_path):
    searched = load_space(space(tmp_path, """
train.lr: {low: 1.0e-5, high: 3.0e-4, log: true}
train.epochs: {low: 1, high: 4, step: 1}
model.dropout: {low: 0, high: 0.3}
model.max_length: [64, 128]
train.freeze_encoder: {choices: [true, false]}
"""), BASE)
    kinds = {p.key: (p.kind, p.low, p.high, p.log, p.choices) for p in searched.params}
    assert kinds == {"train.lr": ("float", 1e-5, 3e-4, True, ()), "train.epochs": ("int", 1, 4, False, ()),
                     "model.dropout": ("float", 0, 0.3, False, ()), "model.max_length": ("choice", None, None, False,
                                                                                        (64, 128)),
                     "train.freeze_encoder": ("choice", None, None, False, (True, False))}


BAD_SPACES = [
    ("train.lrate: {low: 1.0e-5, high: 1.0e-4}", ":1: train.lrate: unknown key 'train.lrate'"),
    ("nosection: [1, 2]", ":1: nosection: 'nosection' is not a config key"),
    ("train.lr: {low: 1.0e-5, high: 1.0e-4}\nmodel.encoder: {low: 1, high: 2}",
     ":2: model.encoder: this key is not a number"),
    ("train.lr: {low: -1.0e-4, high: 1.0e-4}",
     ":1: train.lr: low -0.0001: train.lr and train.head_lr must be positive"),
    ("train.lr: {low: 3.0e-4, high: 1.0e-5}", ":1: train.lr: low (0.0003) must be below high (1e-05)"),
    ("train.lr: {low: 1.0e-3, high: 1.0e-2, step: 2.0e-3}",
     ":1: train.lr: step 0.002 does not divide the range 0.001 to 0.01: make high 0.009 (or 0.011)"),
    ("train.epochs: {low: 1, high: 6, step: 2}", ":1: train.epochs: step 2 does not divide the range 1 to 6"),
    ("train.lr: {low: 0.0, high: 1.0e-4, log: true}", ":1: train.lr: a log range needs low above 0"),
    ("train.epochs: {low: 1, high: 2.5}", ":1: train.epochs: high must be an integer"),
    ("model.dropout: {low: 0.0, high: 1.5}", ":1: model.dropout: high 1.5: model.dropout must be in [0, 1)"),
    ("loss.name: [bce, focall]", ":1: loss.name: choice 'focall': unknown loss 'focall'"),
    ("loss.gamma: {low: 1.0, high: 2.0}", ":1: loss.gamma: never sampled: no loss this search tries (bce) takes gamma"),
    ("loss.name: [bce, asl]\nloss.gamma: {low: 1.0, high: 2.0}", ":2: loss.gamma: never sampled"),
    ("loss.name: [bce, focal]\nloss.gamma: {low: 0.5, high: 3.0, when: {loss.name: bce}}",
     ":2: loss.gamma: never sampled: no loss this search tries (bce) takes gamma (with its when on loss.name)"),
    ("loss.gammma: {low: 1.0, high: 2.0}", ":1: loss.gammma: unknown loss parameter 'gammma'"),
    ("model.head_tokens: {low: 8, high: 32, when: {model.long_text: head_tail}}",
     ":1: model.head_tokens: never sampled: the base config has model.long_text: 'truncate'"),
    ("model.long_text: [truncate, chunks]\nmodel.max_chunks: {low: 2, high: 4, when: {model.long_text: head_tail}}",
     ":2: model.max_chunks: when: model.long_text: 'head_tail' is not one of its choices"),
    ("output.name: [a, b]", ":1: output.name: output.name cannot be searched"),
    ("train.select_metric: [micro_f1, macro_f1]", ":1: train.select_metric: train.select_metric cannot be searched"),
    ("data.text_fields: {choices: [[title], [text]]}",
     ":1: data.text_fields: choice ['title']: each choice must be one"),
    ("train.lr: 1.0e-4", ":1: train.lr: expected {low: .., high: ..} or {choices: [..]}"),
    ("train.lr: {low: 1.0e-5, hgh: 1.0e-4}", ":1: train.lr: unknown field 'hgh'"),
    ("train.lr: {low: 1.0e-5, high: 1.0e-4}\ntrain.lr: {low: 1.0e-5, high: 2.0e-4}", ":2: train.lr: named twice"),
    ("on: [1, 2]", ":1: on: YAML reads this key as bool, not as a config key"),  # YAML 1.1: on, yes are true
    ("train.lr: [1.0e-4]\n1: [2, 3]", ":2: 1: YAML reads this key as int"),
    ("null: [1, 2]", ":1: null: YAML reads this key as null"),
    ("train.lr: [1.0e-4\n", ": invalid YAML"),
    ("- train.lr", ": a search space is a mapping of config keys"),
]


@pytest.mark.parametrize(("text", "message"), BAD_SPACES, ids=[m.split(": ")[1] + str(i) for i, (_, m) in
                                                              enumerate(BAD_SPACES)])
def test_a_bad_space_is_one_line_naming_the_file_line_and_key(tmp_path, text, message):
    path = space(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_space(path, BASE)
    assert one_line(caught.value).startswith(str(path))
    assert message in str(caught.value)


def test_numbers_written_1e_4_are_numbers_as_in_a_config(tmp_path):
    # YAML 1.1 reads 1e-4 (no dot) as a string. The config loader reads it as the number; the space kept the
    # string, so a trial drew '1e-4' while its run saved 0.0001, and a resumed study took its checkpoint for
    # another study's run; a range of them was refused.
    text = "train.lr: [1e-5, 1e-4]\ntrain.head_lr: {low: 1e-3, high: 1e-2, log: true}\n"
    searched = load_space(space(tmp_path, text), BASE)
    params = {p.key: p for p in searched.params}
    assert params["train.lr"].choices == (1e-5, 1e-4)
    assert (params["train.head_lr"].low, params["train.head_lr"].high) == (1e-3, 1e-2)


def test_a_bad_space_stops_mlcls_tune_before_any_trial(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text(f"output: {{dir: {tmp_path / 'runs'}}}\n")
    bad = space(tmp_path, "train.lr: {low: 1.0e-5, high: 1.0e-4}\nloss.gamma: {low: 1.0, high: 2.0}\n")
    result = CliRunner().invoke(app, tune_args(base, bad))
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [f"error: {bad}:2: loss.gamma: never sampled: no loss this search "
                                                  "tries (bce) takes gamma"]
    assert not (tmp_path / "runs").exists()  # no study, no folder: nothing started
    missing = CliRunner().invoke(app, tune_args(base, tmp_path / "nope.yaml"))
    assert missing.exit_code == 1 and "nope.yaml: search space file not found" in missing.stderr


def test_sampling_draws_a_loss_parameter_only_with_a_loss_that_takes_it(tmp_path):
    import optuna

    searched = load_space(space(tmp_path, """
loss.name: [bce, focal, asl]
loss.gamma: {low: 0.5, high: 3.0}
loss.gamma_neg: {low: 1.0, high: 6.0}
model.long_text: [truncate, head_tail]
model.head_tokens: {low: 16, high: 96, when: {model.long_text: head_tail}}
"""), BASE)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    seen = set()
    for _ in range(40):
        values = searched.sample(study.ask(), BASE)
        loss, long_text = values["loss.name"], values["model.long_text"]
        seen.add((loss, long_text))
        assert ("loss.gamma" in values) == (loss == "focal")
        assert ("loss.gamma_neg" in values) == (loss == "asl")
        assert ("model.head_tokens" in values) == (long_text == "head_tail")
    assert len(seen) == 6  # every combination was drawn: the conditions were tested both ways


def test_a_trial_of_another_loss_starts_from_that_loss_defaults():
    focal = load_config(None, ["loss.name=focal", "loss.gamma=3.5"]).to_dict()
    assert with_values(focal, {"loss.name": "asl"})["loss"] == {"name": "asl"}  # gamma was focal's
    assert with_values(focal, {"loss.name": "focal", "train.lr": 1e-3})["loss"]["gamma"] == 3.5


def test_a_number_that_also_takes_auto_is_searched_as_a_range_or_with_auto_among_its_choices(tmp_path):
    # threshold.quantile_scale is `float | Literal["auto"]`: a range spans its numbers, and auto is a choice
    searched = load_space(space(tmp_path, "threshold.quantile_scale: {low: 0.25, high: 2.0, log: true}\n"), BASE)
    assert [(p.kind, p.low, p.high, p.log) for p in searched.params] == [("float", 0.25, 2.0, True)]
    searched = load_space(space(tmp_path, "threshold.quantile_scale: [0.5, 1.0, auto]\n"), BASE)
    assert [(p.kind, p.choices) for p in searched.params] == [("choice", (0.5, 1.0, "auto"))]


def test_best_yaml_stays_yaml_whatever_value_won(tmp_path):
    # A searched value with a line break (data.text_separator "\n") ended the comment line of best.yaml's header:
    # the next line was YAML, and `mlcls train -c best.yaml` failed on it.
    from types import SimpleNamespace

    from mlcls.tune.best import write_best_config

    trial = SimpleNamespace(number=3, value=0.9, params={"data.text_separator": "\n", "train.lr": 1e-4},
                            user_attrs={"run": "trial-0003"}, state=SimpleNamespace(name="COMPLETE"))
    path = write_best_config(tmp_path, "s", BASE, [trial], "micro_f1")
    config = load_config(path)
    assert config.data.text_separator == "\n" and config.train.lr == 1e-4
    assert '# Searched: data.text_separator="\\n", train.lr=0.0001.' in path.read_text()
