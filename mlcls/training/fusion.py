"""model.lexical: tfidf at the end of training, for one model and for cross-fitting alike: given the lexical
model and its scores on the tuning rows (validation, or out-of-fold), choose its blend weight and the decision
rule together, write the model into the run, and say what was chosen (model/lexical.py computes; this decides).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlcls.config import Config
from mlcls.data.labels import Encoded
from mlcls.decision.rules import DecisionRule
from mlcls.decision.tuning import choose_thresholds, held_out_f1
from mlcls.model.lexical import LexicalModel, choose_weight
from mlcls.run.lexical import save_lexical


@dataclass
class Fusion:
    rule: DecisionRule  # tuned on the blended scores
    probs: np.ndarray  # the blended tuning scores
    parts: dict[str, np.ndarray]  # the encoder's and the lexical model's own scores, for tuning_scores.npz
    summary: dict[str, Any]  # what metrics.json says about the fusion


def fuse_lexical(config: Config, model: LexicalModel, encoder_probs: np.ndarray, lexical_probs: np.ndarray,
                 enc: Encoded, labels: list[str], priors: np.ndarray, run_dir: Path) -> Fusion:
    """Set `model.weight` to the weight whose blended tuning scores give the configured rule its best held-out
    mean of micro- and macro-F1 (0: the transformer alone), tune the rule on that blend, and save the model
    into `run_dir`."""

    held_out = held_out_f1_of(config, enc.targets, enc.mask, labels, priors)
    model.blend_space = config.model.lexical_blend
    model.weight, tried = choose_weight(encoder_probs, lexical_probs, lambda p: fusion_objective(held_out(p)),
                                        model.abstain, model.blend_space)
    blended = model.blend_scores(encoder_probs, lexical_probs)  # what predict will blend
    save_lexical(run_dir, model)
    summary = {"lexical_weight": model.weight, "lexical_blend": model.blend_space,
               "lexical_weights_tried": {f"{w:.1f}": round(s, 4) for w, s in tried}}
    return Fusion(choose_thresholds(config, blended, enc.targets, enc.mask, labels, priors), blended,
                  {"encoder_probs": encoder_probs, "lexical_probs": lexical_probs}, summary)


def held_out_f1_of(config: Config, targets: np.ndarray, mask: np.ndarray, labels: list[str],
                   priors: np.ndarray) -> Callable[[np.ndarray], dict[str, float]]:
    """Scores -> the configured rule's held-out micro- and macro-F1 on these rows (each rule tuned on 4/5 of them
    and scored on the other 1/5: decision.tuning.held_out_f1). The blend weight is chosen by it
    (scripts/bench_lexical_c.py chooses the same way)."""

    def make_rule(p, t, m):
        return choose_thresholds(config, p, t, m, labels, priors)

    return lambda probs: held_out_f1(probs, targets, mask, labels, make_rule, seed=config.train.seed)


def fusion_objective(f1: dict[str, float]) -> float:
    """What the blend weight maximises: the mean of held-out micro- and macro-F1."""
    return (f1["micro_f1"] + f1["macro_f1"]) / 2
