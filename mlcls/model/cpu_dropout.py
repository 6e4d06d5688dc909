"""Dropout for training on a CPU, its masks cut from 64-bit random integers instead of drawn one float at a time.

Why: PyTorch's CPU dropout draws a Bernoulli float per element (`bernoulli_`) and then multiplies. A training
step of the Reuters CPU config (60 windows of 128 tokens, the bundled MiniLM) drops about 110 million units:
71 million attention weights and 38 million hidden units. Here one 64-bit draw of the same generator gives four
16-bit uniforms, and a unit is dropped where its slice falls below p * 65536 (scripts/bench_attention.py
measures a step; docs/benchmarks.md, "Attention in training on the CPU").

What stays the same: the kept units are scaled by 1 / (1 - p), so the expectation is unchanged; the generator is
torch's default, so torch.manual_seed makes a run repeatable. What differs: p is taken in steps of 1/65536 (0.1
is 0.100006; a p that steps of 1/65536 cannot hold within 0.1%, below about 0.005 or above 0.995, takes torch's
dropout instead), and the masks are another stream than torch's dropout draws, so a run is not bit-identical to
one trained with it. Evaluation (module.eval()) is untouched: dropout is the identity there.

GPUs keep torch's dropout (its CUDA kernel draws masks fast); mlcls/model/attention.py decides where this runs.
"""

from __future__ import annotations

import torch
from torch import nn

_SLICES = 65536  # the values of a 16-bit slice


def dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """`x` with each element zeroed with probability `p` (to 1/65536) and the rest scaled by 1 / (1 - p); `x` itself
    where not training or p is 0."""
    if not training or p == 0.0:
        return x
    steps = round(p * _SLICES)  # the slices' values that drop a unit
    if not 0 < steps < _SLICES or abs(steps / _SLICES - p) > 1e-3 * min(p, 1.0 - p):
        return torch.nn.functional.dropout(x, p, training)  # p too near 0 or 1 for steps of 1/65536: torch's own
    count = x.numel()
    # random_(int64 min, None) fills the whole 64-bit range; random_() alone stops at 2**63 - 1 and would leave the
    # top slice of every draw one bit short (half the values).
    draws = torch.empty((count + 3) // 4, dtype=torch.int64, device=x.device).random_(-(2**63), None)
    slices = draws.view(torch.int16)[:count].view(x.shape)
    dropped = slices < steps - _SLICES // 2  # int16 runs from -32768: the lowest `steps` values drop
    return x.masked_fill(dropped, 0.0) * (1.0 / (1.0 - p))


class CpuDropout(nn.Dropout):
    """nn.Dropout whose training masks come from `dropout` above (same p, same place in the model)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)


def use_cpu_dropout(model: nn.Module) -> int:
    """Replace every nn.Dropout in `model` by a CpuDropout of the same p; returns how many were replaced. The
    modules hold no weights, so the state dict and a saved run are the same either way."""
    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Dropout:  # exactly: a subclass may do more than drop units
                setattr(parent, name, CpuDropout(child.p, child.inplace))
                replaced += 1
    return replaced
