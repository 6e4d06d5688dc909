"""Scoring a BERT encoder on its real tokens only: the linear layers skip the padding.

Why: a forward pass pads every window to the longest in its pass. `mlcls predict` sorts a chunk of 2,048
articles by length, so its passes pad little (191 padded tokens per Reuters article against 184 real ones), but
a call of `mlcls serve` holds whatever 16 articles are waiting, and its last pass is filled up to a power of two
rows (mlcls/data/batching.py): 236 padded tokens per article, 28% more than the text. Most of a BERT layer's work
is per token (the query, key, value, output and feed-forward projections; the attention kernel took about a
quarter of a 16 x 128 pass on the bundled MiniLM), so this forward runs those on the packed real tokens,
(tokens, d), and pads only for attention, which needs the (batch, heads, length, length) layout.

It is taken only where it is safe and pays, the rest keeps the model's own forward:
- inside `enabled()`: the scoring step of validation (during training too), eval, predict and serve enters it;
  training steps (autograd) and exports (their graphs are traced from the model's own forward) never do;
- transformers' BertModel (the bundled MiniLM and BERT checkpoints; not remote code), no decoder;
- on a CPU: a GPU pays per kernel launch, not per padded token, and `nonzero` would synchronise it;
- a pass with enough padding to pay for the gathers and the fill (MAX_REAL_SHARE, packed_rows).

transformers has no such path for this encoder on a CPU (its padding-free attention needs flash-attention on a
GPU; BetterTransformer, which packed tokens, was removed), hence this short forward over the model's own
modules: their weights, quantised (--int8) or cast (bf16) copies included. tests/model/test_unpadded.py checks
it against the model's own forward, in fp32, under bf16 autocast with the weights cast as load_run casts them,
and with --int8's quantised layers. (--int8 quantises activations per call: over the real tokens and the fill
rows here, over the padded pass there, so its scores move by quantisation noise.)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch
import torch.nn.functional as F

from mlcls.data import batching

_ENABLED: ContextVar[bool] = ContextVar("mlcls_unpadded", default=False)
# Taken on a pass whose packed rows (packed_rows) are at most this share of its padded tokens. Measured on the
# bundled MiniLM, bf16, 2-core Xeon with AMX (passes of 2 to 16 windows of 64 or 128 tokens, against the model's
# own forward): 1.01-1.62x at 60-75% real, most of them 1.1-1.3x; 0.94-1.15x at 92-97%, where the gathers cost
# about what the padding saves. predict's length-sorted passes are ~96% real: predict and eval keep the model's
# forward but for their shortest windows.
MAX_REAL_SHARE = 0.8
_ALLOWED = True  # set_unpadded_scoring(False): the model's own forward everywhere (benchmarks compare the two)


def set_unpadded_scoring(allowed: bool) -> None:
    """Allow (the default) or forbid this forward in the scoring step, for the whole process."""
    global _ALLOWED
    _ALLOWED = allowed


@contextmanager
def enabled() -> Iterator[None]:
    """Inside it, `MultiLabelClassifier.pool` may take this forward (see `applies`)."""
    token = _ENABLED.set(True)
    try:
        yield
    finally:
        _ENABLED.reset(token)


def applies(encoder: torch.nn.Module, attention_mask: torch.Tensor) -> bool:
    """True where this forward is safe and pays for `encoder` on a pass with `attention_mask`."""
    if not (_ALLOWED and _ENABLED.get()) or encoder.training or torch.is_grad_enabled():
        return False
    config = getattr(encoder, "config", None)
    if (attention_mask.device.type != "cpu" or not _is_transformers_bert(encoder) or config.is_decoder
            or config.add_cross_attention or getattr(config, "position_embedding_type", "absolute") != "absolute"
            or getattr(config, "chunk_size_feed_forward", 0)):
        return False
    return packed_rows(attention_mask) <= MAX_REAL_SHARE * attention_mask.numel()


def _is_transformers_bert(encoder: torch.nn.Module) -> bool:
    """transformers' own BertModel (a --int8 copy keeps its class), not a remote-code model whose config says
    "bert" (MosaicBERT's layers differ)."""
    kind = type(encoder)
    return kind.__name__ == "BertModel" and kind.__module__.startswith("transformers.models.bert.")


def packed_rows(attention_mask: torch.Tensor) -> int:
    """The rows the linear layers compute for a pass: its real tokens, filled up to a multiple of its rows x the
    inference pad multiple (read at call time: set_inference_pad_multiple). Why that multiple: the size of a padded
    pass with the same rows at a narrower width, a matrix shape the padded forward already uses. oneDNN builds and
    caches its kernels per matrix shape, ~2 MiB a shape for this model's linear layers: an exact count of real
    tokens was a new shape at nearly every pass (its cache of 1,024 kernels turned over, and varied calls ran 2-16%
    slower than padding), and multiples of 64 still added 32 shapes (+200 MiB, and +9.5 to +12% RSS over the
    serving benchmark's load, against +3.8 to +4.5% without them)."""
    return batching.round_up(int(attention_mask.sum()), attention_mask.shape[0] * batching.INFERENCE_PAD_MULTIPLE)


def last_hidden_state(encoder: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """(batch, length, hidden) as `encoder(...).last_hidden_state`; rows at padded positions are zero."""
    batch, length = input_ids.shape
    real = attention_mask.reshape(-1).nonzero().squeeze(1)  # the real tokens' positions in (batch x length)
    tokens = len(real)
    hidden = encoder.embeddings(input_ids=input_ids)  # on the padded ids: positions and token types as usual
    rows = packed_rows(attention_mask)
    x = _fill(hidden.reshape(batch * length, -1)[real], rows)
    keys = attention_mask.bool()[:, None, None, :]  # attention reads a window's real tokens only
    for layer in encoder.encoder.layer:
        attention = layer.attention.self
        q, k, v = (_scatter(project(x)[:tokens], real, batch, length)
                   .unflatten(-1, (attention.num_attention_heads, -1)).transpose(1, 2)
                   for project in (attention.query, attention.key, attention.value))
        context = F.scaled_dot_product_attention(q, k, v, attn_mask=keys, scale=attention.scaling)
        context = context.transpose(1, 2).reshape(batch * length, -1)[real]  # padded query rows dropped
        x = layer.attention.output(_fill(context, rows), x)
        x = layer.output(layer.intermediate(x), x)
    return _scatter(x[:tokens], real, batch, length)


def _fill(packed: torch.Tensor, rows: int) -> torch.Tensor:
    """`packed` with rows of zeros appended up to `rows` (packed_rows)."""
    extra = rows - len(packed)
    return torch.cat([packed, packed.new_zeros(extra, packed.shape[-1])]) if extra else packed


def _scatter(packed: torch.Tensor, real: torch.Tensor, batch: int, length: int) -> torch.Tensor:
    """(tokens, width) packed rows back to (batch, length, width), zeros at the padded positions."""
    out = packed.new_zeros(batch * length, packed.shape[-1]).index_copy_(0, real, packed)
    return out.view(batch, length, -1)
