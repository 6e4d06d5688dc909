"""model.lexical: tfidf at the end of training, for one model and for cross-fitting alike: given the lexical
model and its scores on the tuning rows (validation, or out-of-fold), choose its blend weight and the decision
rule together, write the model into the run, and say what was chosen (model/lexical.py computes; this decides).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlcls.config import Config
from mlcls.data.labels import Encoded
from mlcls.decision.rules import DecisionRule
from mlcls.decision.tuning import choose_thresholds, held_out_f1
from mlcls.model.lexical import LexicalModel, blend, choose_weight
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

    def make_rule(p, t, m):
        return choose_thresholds(config, p, t, m, labels, priors)

    def held_out(probs: np.ndarray) -> float:
        f1 = held_out_f1(probs, enc.targets, enc.mask, labels, make_rule, seed=config.train.seed)
        return (f1["micro_f1"] + f1["macro_f1"]) / 2

    model.weight, tried = choose_weight(encoder_probs, lexical_probs, held_out)
    blended = blend(encoder_probs, lexical_probs, model.weight, model.abstain)  # what predict will blend
    save_lexical(run_dir, model)
    summary = {"lexical_weight": model.weight,
               "lexical_weights_tried": {f"{w:.1f}": round(s, 4) for w, s in tried}}
    return Fusion(make_rule(blended, enc.targets, enc.mask), blended,
                  {"encoder_probs": encoder_probs, "lexical_probs": lexical_probs}, summary)
