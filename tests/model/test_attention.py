"""The encoder's attention in training (mlcls/model/attention.py): model.attention_dropout reaches the encoder
(fresh, transformers head, and a run trained from), eager attention on a CPU trains the same model as
transformers' own kernel, and the saved run does not depend on either."""

from __future__ import annotations

import json

import pytest
import torch

from mlcls.config import load_config
from mlcls.errors import ConfigError
from mlcls.model.attention import CPU_TRAINING_ATTENTION, attention_dropout_setting, use_training_attention
from mlcls.model.classifier import MultiLabelClassifier, build_model, load_encoder
from tests.conftest import TINY_RECORDS, _cli, tiny_config, write_jsonl


def attention_dropouts(model: torch.nn.Module) -> set[float]:
    """The p of every attention-weight dropout in a transformers BERT (its self-attention modules')."""
    return {m.dropout.p for name, m in model.named_modules() if name.endswith("attention.self")}


def test_attention_dropout_reaches_the_encoder(tiny_encoder, tmp_path):
    config = load_config(tiny_config(tmp_path, tiny_encoder, tmp_path / "none.jsonl"),
                         overrides=["model.attention_dropout=0.0"])
    model, _ = build_model(config.model, ["a", "b"])
    assert model.encoder.config.attention_probs_dropout_prob == 0.0
    assert attention_dropouts(model) == {0.0}
    assert {m.p for n, m in model.named_modules() if n.endswith("output.dropout")} == {0.1}  # hidden: unchanged

    native, _ = build_model(load_config(tiny_config(tmp_path, tiny_encoder, tmp_path / "none.jsonl"),
                                        overrides=["model.head=transformers", "model.attention_dropout=0.25"]).model,
                            ["a", "b"])
    assert attention_dropouts(native) == {0.25}
    assert use_training_attention(native, torch.device("cpu")) == CPU_TRAINING_ATTENTION  # its base model's config
    assert native.model.config._attn_implementation == CPU_TRAINING_ATTENTION


def test_null_keeps_the_encoders_own(tiny_encoder):
    assert attention_dropout_setting(str(tiny_encoder), None) == {}
    encoder, _ = load_encoder(str(tiny_encoder))
    assert attention_dropouts(encoder) == {0.1}  # BertConfig's default, as saved by the fixture


def test_an_encoder_without_the_setting_is_refused_in_one_line(tmp_path):
    from transformers import GPT2Config

    GPT2Config(n_layer=1, n_embd=8, n_head=2).save_pretrained(tmp_path)  # its attention dropout is attn_pdrop
    with pytest.raises(ConfigError) as caught:
        attention_dropout_setting(str(tmp_path), 0.0)
    assert str(caught.value) == (f"model.attention_dropout: the encoder '{tmp_path}' (gpt2) has no attention dropout "
                                 "setting (attention_probs_dropout_prob or attention_dropout); set it to null")
    with pytest.raises(ConfigError, match="model.attention_dropout must be in"):
        load_config(None, overrides=["model.attention_dropout=1.0"])


def test_cpu_training_attention_trains_the_same_model(tiny_encoder):
    """The switch changes the kernel, not the arithmetic: the same logits and gradients as transformers' own
    attention, with padding in the batch, in training mode (no dropout anywhere: cpu_dropout draws other masks
    than torch's dropout, tests/model/test_cpu_dropout.py checks those)."""
    results = []
    for switched in (False, True):
        encoder, _ = load_encoder(str(tiny_encoder), attention_dropout=0.0)
        encoder.config.hidden_dropout_prob = 0.0
        for module in encoder.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
        torch.manual_seed(0)
        model = MultiLabelClassifier(encoder, num_labels=3, dropout=0.0).train()
        if switched:
            assert use_training_attention(model, torch.device("cpu")) == CPU_TRAINING_ATTENTION
        assert model.encoder.config._attn_implementation == (CPU_TRAINING_ATTENTION if switched else "sdpa")
        input_ids = torch.tensor([[2, 7, 8, 9, 3], [2, 10, 3, 0, 0]])
        logits = model(input_ids, (input_ids != 0).long())
        logits.sum().backward()
        results.append((logits.detach(), model.encoder.encoder.layer[0].attention.self.query.weight.grad.clone()))
    torch.testing.assert_close(results[1], results[0], atol=1e-5, rtol=1e-4)


def test_a_gpu_keeps_transformers_choice(tiny_encoder):
    encoder, _ = load_encoder(str(tiny_encoder))
    model = MultiLabelClassifier(encoder, num_labels=3)
    assert use_training_attention(model, torch.device("cuda")) is None  # only the device's type is read
    assert model.encoder.config._attn_implementation == "sdpa"
    assert use_training_attention(torch.nn.Linear(2, 2), torch.device("cpu")) is None  # no transformers switch


def test_a_switch_that_changes_nothing_is_not_reported_as_eager():
    """transformers only logs a warning for a model whose attention predates its attention interface."""
    from types import SimpleNamespace

    class OldStyle(torch.nn.Module):
        config = SimpleNamespace(_attn_implementation="sdpa")

        def set_attn_implementation(self, name):  # keeps its kernel, as transformers does for such a model
            pass

    model = torch.nn.Module()
    model.encoder = OldStyle()
    assert use_training_attention(model, torch.device("cpu")) is None


def test_a_frozen_encoder_refuses_attention_dropout():
    with pytest.raises(ConfigError, match="model.attention_dropout acts while the encoder trains"):
        load_config(None, overrides=["model.attention_dropout=0", "train.freeze_encoder=true"])


def test_a_run_trained_without_attention_dropout_loads_and_starts_runs(tiny_encoder, tmp_path, monkeypatch):
    import mlcls.training.recipe as recipe

    trained_with = []

    def spy(model, device):  # what the training steps run: the real switch, then the model's own state
        chosen = use_training_attention(model, device)
        trained_with.append((chosen, model.encoder.config._attn_implementation, attention_dropouts(model)))
        return chosen

    monkeypatch.setattr(recipe, "use_training_attention", spy)
    data = write_jsonl(tmp_path / "tiny.jsonl", TINY_RECORDS)
    config = tiny_config(tmp_path, tiny_encoder, data)
    result = _cli("train", "-c", str(config), "--name", "a0", "--set", "model.attention_dropout=0",
                  "--set", "train.epochs=2")
    assert result.exit_code == 0, result.output
    assert trained_with == [(CPU_TRAINING_ATTENTION, CPU_TRAINING_ATTENTION, {0.0})]  # the tiny config: on the CPU
    run = tmp_path / "runs" / "a0"
    saved = json.loads((run / "encoder" / "config.json").read_text())
    assert saved["attention_probs_dropout_prob"] == 0.0 and "_attn_implementation" not in saved
    assert _cli("eval", str(run), "--data", str(data)).exit_code == 0
    assert "| dropout | 0.0, on attention weights 0.0 |" in (run / "README.md").read_text()  # the model card says it

    from mlcls.run.parent import load_parent_model, read_parent

    parent = read_parent(str(run))
    model, _ = load_parent_model(parent, False, 0.3)  # a training from the run sets its own
    assert attention_dropouts(model) == {0.3}
    model, _ = load_parent_model(parent, False)  # null: the run's encoder's own, as it was trained
    assert attention_dropouts(model) == {0.0}
