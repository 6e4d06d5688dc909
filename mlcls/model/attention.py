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

The kernel is transformers' eager attention with one change: its dropout masks come from cpu_dropout.py (four
16-bit draws from each 64-bit random integer, instead of a Bernoulli float per weight), and so do the model's
other dropouts; registered with transformers' AttentionInterface (and its mask interface, as eager's) under
CPU_TRAINING_ATTENTION. A step trained 1.20x faster again than with eager attention and torch's dropout (2.36 s
against 2.83); the masks are another random stream than torch's dropout draws.

What a run is does not change: the saved encoder's config does not record the kernel, so eval, predict, serve and
exports load it with transformers' own. Validation during training scores the training model, with the training
kernel where the unpadded forward (unpadded.py) does not take the pass: eager's arithmetic in eval mode (no
dropout), its pooled vectors within float rounding of the fused kernel's.
"""

from __future__ import annotations

from typing import Any

from mlcls.errors import ConfigError, first_line

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
        first = first_line(exc)
        raise ConfigError(f"model.attention_dropout: cannot read the configuration of '{source}': {first}") from None
    for key in ATTENTION_DROPOUT_KEYS:
        if hasattr(config, key):
            return {key: value}
    raise ConfigError(f"model.attention_dropout: the encoder '{source}' ({config.model_type}) has no attention "
                      f"dropout setting ({' or '.join(ATTENTION_DROPOUT_KEYS)}); set it to null")


# The name under which cpu_training_attention is registered with transformers' AttentionInterface.
CPU_TRAINING_ATTENTION = "mlcls_cpu_training"


def cpu_training_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """transformers' eager_attention_forward (models/bert/modeling_bert.py, 5.x), its dropout on the attention
    weights drawn by cpu_dropout.dropout; the same signature and return, so any model on transformers' attention
    interface calls it."""
    import torch

    from mlcls.model.cpu_dropout import dropout as cpu_dropout

    if scaling is None:
        scaling = query.size(-1) ** -0.5
    weights = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        weights = weights + attention_mask
    weights = torch.nn.functional.softmax(weights, dim=-1)
    weights = cpu_dropout(weights, dropout, module.training)
    output = torch.matmul(weights, value).transpose(1, 2).contiguous()
    return output, weights


def use_training_attention(model, device) -> str | None:
    """On a CPU, switch the model's transformers encoder to CPU_TRAINING_ATTENTION for training (eager where its
    attention is not BERT's: runs_berts_attention) and its dropout modules to cpu_dropout's (see the module's
    docstring); returns the attention implementation set, or None where the encoder keeps its own (a GPU, a model
    without transformers' switch, or one that takes no other kernel)."""
    if device.type != "cpu":
        return None
    from mlcls.model.cpu_dropout import use_cpu_dropout

    use_cpu_dropout(model)  # the hidden units' dropouts, whichever kernel the attention keeps
    encoder = getattr(model, "encoder", None)  # both heads name their transformers model so (classifier.py)
    switch = getattr(encoder, "set_attn_implementation", None)
    if switch is None:
        return None
    kernel = CPU_TRAINING_ATTENTION if runs_berts_attention(encoder) else "eager"
    if kernel == CPU_TRAINING_ATTENTION:
        from transformers import AttentionInterface, AttentionMaskInterface
        from transformers.masking_utils import eager_mask

        AttentionInterface.register(CPU_TRAINING_ATTENTION, cpu_training_attention)
        # Its mask as eager's (additive, a large negative on padding): transformers builds no mask at all for an
        # implementation its mask interface does not know (the padded tokens would be attended to).
        AttentionMaskInterface.register(CPU_TRAINING_ATTENTION, eager_mask)
    try:
        switch(kernel)  # on the encoder's config, in place: each model mlcls builds loads its own
    except (ValueError, ImportError):  # remote code that offers only its own kernel: it trains as it is
        return None
    # A model whose attention predates transformers' attention interface keeps its kernel, with a logged warning
    # (which quiet_transformers hides) instead of an error: read what it runs now.
    running = getattr(encoder.config, "_attn_implementation", None)
    return kernel if running == kernel else None


def runs_berts_attention(encoder) -> bool:
    """Whether the encoder's own eager attention is BERT's, the function cpu_training_attention copies:
    transformers' modular models carry copies of it (RoBERTa, XLM-R, ELECTRA, DistilBERT, ALBERT, ...). Others
    compute more (grouped-query heads, soft-capping, attention sinks, an fp32 softmax) and keep their own eager,
    with torch's dropout on the attention weights."""
    import inspect
    import sys

    from transformers.models.bert import modeling_bert

    berts = modeling_bert.eager_attention_forward
    own = getattr(sys.modules.get(type(encoder).__module__), "eager_attention_forward", None)
    if own is None or own is berts:
        return own is berts
    try:
        return inspect.getsource(own) == inspect.getsource(berts)
    except (OSError, TypeError):  # no source to compare (a frozen or compiled module)
        return False
