"""How the encoder's attention runs in training: its dropout (model.attention_dropout) and, on a CPU, its kernel.

Why both matter on a CPU (the bundled MiniLM, bf16 autocast, a training step of 60 windows of 128 tokens, 2-core
AMD EPYC; scripts/bench_attention.py, docs/benchmarks.md "Attention in training on the CPU"): PyTorch's fused
CPU attention (scaled_dot_product_attention's flash kernel) has no dropout, so with the encoder's own attention
dropout (0.1 for BERT-like checkpoints) every step falls back to its unfused path and draws a Bernoulli mask over
every (window, head, query, key), about 71 million draws per step here; without dropout it takes the flash
kernel, whose backward pass is slow on a CPU. transformers' "eager" attention (two batched matrix products and a
softmax) computes the same and was faster in both cases: 1.17-1.30x a step with the dropout, 1.11-1.17x without.
So training on a CPU uses eager attention. The dropout itself costs too: at `model.attention_dropout: 0` an eager
step was 1.29-1.37x faster (a Reuters training 1,416 s against 1,828 s); whether that costs accuracy is measured
per config (on Reuters' CPU config it did, on validation), so it is a key, not a default. GPUs keep
transformers' own choice (their fused kernels train fast).

What a run is does not change: the saved encoder's config does not record the kernel, so eval, predict, serve and
exports load it with transformers' own. Validation during training scores the training model, eager where the
unpadded forward (unpadded.py) does not take the pass: the same arithmetic in eval mode (no dropout), its pooled
vectors within float rounding of the fused kernel's.
"""

from __future__ import annotations

from typing import Any

from mlcls.errors import ConfigError

# Where transformers' configs keep the dropout on attention weights: BERT, RoBERTa, DeBERTa, ELECTRA, XLM-R, ...
# call it attention_probs_dropout_prob; DistilBERT, ModernBERT and most newer ones attention_dropout.
ATTENTION_DROPOUT_KEYS = ("attention_probs_dropout_prob", "attention_dropout")


def attention_dropout_setting(source: str, value: float | None, trust_remote_code: bool = False) -> dict[str, Any]:
    """The from_pretrained keyword that sets the encoder at `source` to `value` attention dropout ({} for null:
    the encoder's own). The config is read to find its key: a keyword it lacks would reach the model's
    constructor and fail there, or be ignored."""
    if value is None:
        return {}
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"model.attention_dropout: cannot read the configuration of '{source}': {first}") from None
    for key in ATTENTION_DROPOUT_KEYS:
        if hasattr(config, key):
            return {key: value}
    raise ConfigError(f"model.attention_dropout: the encoder '{source}' ({config.model_type}) has no attention "
                      f"dropout setting ({' or '.join(ATTENTION_DROPOUT_KEYS)}); set it to null")


def use_training_attention(model, device) -> str | None:
    """On a CPU, switch the model's transformers encoder to eager attention for training (see the module's
    docstring); returns the implementation set, or None where it keeps its own (a GPU, a model without
    transformers' switch, or one that has no eager implementation)."""
    if device.type != "cpu":
        return None
    encoder = getattr(model, "encoder", None)  # both heads name their transformers model so (classifier.py)
    switch = getattr(encoder, "set_attn_implementation", None)
    if switch is None:
        return None
    try:
        switch("eager")
    except (ValueError, ImportError):  # remote code that offers only its own kernel: it trains as it is
        return None
    # A model whose attention predates transformers' attention interface keeps its kernel, with a logged warning
    # (which quiet_transformers hides) instead of an error: read what it runs now.
    return "eager" if getattr(encoder.config, "_attn_implementation", None) == "eager" else None
