"""The optimizer's parameter groups and schedule: AdamW with the head at its own rate, linear warm-up and decay."""

from __future__ import annotations

from typing import Any

from mlcls.config import Config


def param_groups(model, config: Config) -> list[dict[str, Any]]:
    """Encoder at lr, head at head_lr; no weight decay on biases and LayerNorm weights (1-D tensors)."""
    groups = []
    for name, part, lr in (("encoder", model.encoder, config.train.lr), ("head", model.head, config.train.head_lr)):
        params = [p for p in part.parameters() if p.requires_grad]  # `name`: for the trackers (learning_rates)
        groups.append({"params": [p for p in params if p.ndim >= 2], "lr": lr,
                       "weight_decay": config.train.weight_decay, "name": name})
        groups.append({"params": [p for p in params if p.ndim < 2], "lr": lr, "weight_decay": 0.0, "name": name})
    return [g for g in groups if g["params"]]  # a frozen encoder leaves its groups empty


def learning_rates(optimizer) -> dict[str, float]:
    """{"train/lr_encoder": ..., "train/lr_head": ...}: one rate per part (its two groups, with and without
    weight decay, share it); groups of a checkpoint written before groups had names go by their index."""
    return {f"train/lr_{group.get('name', i)}": float(group["lr"]) for i, group in enumerate(optimizer.param_groups)}


def linear_warmup_decay(optimizer, warmup_steps: int, total_steps: int):
    from transformers import get_linear_schedule_with_warmup

    return get_linear_schedule_with_warmup(optimizer, warmup_steps, total_steps)
