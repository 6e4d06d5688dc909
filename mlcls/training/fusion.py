"""model.lexical: tfidf at the end of training: fit the lexical model, choose its blend weight and the decision
rule on the tuning scores (validation, or out-of-fold), and write both into the run (model/lexical.py)."""

from __future__ import annotations

from typing import Any

import numpy as np

from mlcls.config import Config
from mlcls.data.labels import Encoded
from mlcls.inference.decision import DecisionRule, held_out_f1
from mlcls.model.lexical import LexicalModel, blend, choose_weight


def fuse(config: Config, model: LexicalModel, encoder_probs: np.ndarray, lexical_probs: np.ndarray, enc: Encoded,
         labels: list[str], priors: np.ndarray) -> tuple[DecisionRule, np.ndarray, list[tuple[float, float]]]:
    """Set `model.weight` to the weight whose blended tuning scores give the configured rule its best held-out
    mean of micro- and macro-F1 (0: the transformer alone); return (the rule tuned on the blend, the blended
    scores, every (weight, held-out mean F1) tried)."""
    from mlcls.training.loop import choose_thresholds

    def make_rule(p, t, m):
        return choose_thresholds(config, p, t, m, labels, priors)

    def held_out(probs: np.ndarray) -> float:
        f1 = held_out_f1(probs, enc.targets, enc.mask, labels, make_rule, seed=config.train.seed)
        return (f1["micro_f1"] + f1["macro_f1"]) / 2

    model.weight, tried = choose_weight(encoder_probs, lexical_probs, held_out)
    blended = blend(encoder_probs, lexical_probs, model.weight)
    return make_rule(blended, enc.targets, enc.mask), blended, tried


def describe_fusion(weight: float, tried: list[tuple[float, float]]) -> dict[str, Any]:
    """What metrics.json says about the fusion."""
    return {"lexical_weight": weight, "lexical_weights_tried": {f"{w:.1f}": round(s, 4) for w, s in tried}}
