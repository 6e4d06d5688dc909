"""Lexical fusion (model.lexical: tfidf): a TF-IDF + logistic-regression scorer beside the transformer, its
scores blended with the transformer's (model.lexical_blend): the weighted mean of the two probabilities,
p = (1 - w) p_encoder + w p_lexical, or of the two log-odds, p = sigmoid((1 - w) logit p_encoder + w logit p_lexical).

Why: rare topics often hinge on a few telling words (a commodity's name, an agency), which a linear model
on word counts picks up from a handful of articles, while a fine-tuned encoder needs many more. The weight
w is chosen on the scores the decision rule is tuned on (validation, or out-of-fold with train.folds), from
0 (the transformer alone: fusion off when it does not help) upwards; never on test.

scikit-learn fits it (TfidfVectorizer, one LogisticRegression per label). It is saved without pickle, which
runs code when loaded (mlcls/run/lexical.py writes and reads it): the vocabulary as JSON, idf, coefficients and
intercepts as safetensors, the vectorizer's settings, the weight and the blend as JSON; loading rebuilds a
TfidfVectorizer with that vocabulary and idf.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Sublinear tf, words seen in at least 2 articles: the usual strong setting for news topics (Joachims 1998;
# the TF-IDF + linear SVM row in docs/benchmarks.md). The regression's C is model.lexical_c (default 10: little
# regularisation, since the vocabulary is large and the rare topics have few articles).
VECTORIZER = {"sublinear_tf": True, "min_df": 2, "lowercase": True, "dtype": "float32"}
DEFAULT_C = 10.0
WEIGHTS = tuple(round(w, 2) for w in np.arange(0.0, 0.81, 0.1))
# How the two scores mix (model.lexical_blend). "probability" was the only way before the key, and a run whose
# lexical/settings.json does not say is read as it. "logit" averages the log-odds, a product of the two models'
# odds: where one of them is sure (the lexical model's odds for a topic named in the text), it outweighs the
# other's doubt, which a mean of probabilities caps at w. On Reuters' validation it gave the CPU config +1.1
# micro-F1 after fusion on 3 seeds (docs/benchmarks.md, "How the lexical model's scores are blended").
BLENDS = ("probability", "logit")
DEFAULT_BLEND = "probability"
# Probabilities are clipped before their log-odds: float32 holds sigmoid(x) = 1 from x ~ 17 on, whose logit is
# infinite; 1e-7 caps a logit at about +-16, beyond any threshold the rules tune.
_LOGIT_CLIP = 1e-7


@dataclass
class LexicalModel:
    """The TF-IDF + logistic-regression model that model.lexical blends with the encoder (a run's lexical/):
    its vocabulary, idf and per-label coefficients, and the blend weight chosen on validation."""

    vocabulary: dict[str, int]
    idf: np.ndarray  # (features,)
    coef: np.ndarray  # (labels, features)
    intercept: np.ndarray  # (labels,)
    weight: float = 0.0  # the blend weight, chosen on the tuning scores
    settings: dict[str, Any] = field(default_factory=lambda: dict(VECTORIZER))
    c: float = DEFAULT_C  # the regressions' C it was fitted with (recorded; scoring does not use it)
    blend_space: str = DEFAULT_BLEND  # model.lexical_blend: what the weight averages (BLENDS)
    # (labels,) True where the training data annotated no article with the label (a label kept from a parent
    # run, model.init_keep_labels): the lexical model knows nothing of it and leaves its score to the encoder.
    # Its "prior" of 0 annotated articles would be 0.5 for every article, which a blend turns into a label that
    # fires on everything. None: every label was annotated (and runs saved before this field).
    abstain: np.ndarray | None = None
    _vectorizer: Any = field(default=None, repr=False, compare=False)
    _coef_t: Any = field(default=None, repr=False, compare=False)  # coef.T, contiguous (probabilities)

    def vectorizer(self):
        if self._vectorizer is None:
            from sklearn.feature_extraction.text import TfidfVectorizer

            settings = {k: v for k, v in self.settings.items() if k not in ("min_df", "dtype")}
            self._vectorizer = TfidfVectorizer(vocabulary=self.vocabulary, dtype=np.float32, **settings)
            self._vectorizer.idf_ = self.idf
        return self._vectorizer

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        """(texts, labels) probabilities of the lexical model alone."""
        x = self.vectorizer().transform(texts)
        if self._coef_t is None:  # scipy copies a transposed (non-contiguous) matrix at every product: ~1 ms a
            self._coef_t = np.ascontiguousarray(self.coef.T)  # call, what one served article costs (mlcls serve)
        logits = np.asarray(x @ self._coef_t) + self.intercept
        return (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)

    def blend(self, texts: Sequence[str], encoder_probs: np.ndarray) -> np.ndarray:
        if self.weight == 0.0:
            return encoder_probs
        return self.blend_scores(encoder_probs, self.probabilities(texts))

    def blend_scores(self, encoder_probs: np.ndarray, lexical_probs: np.ndarray) -> np.ndarray:
        """The encoder's and this model's probabilities blended as this run blends them."""
        return blend(encoder_probs, lexical_probs, self.weight, self.abstain, self.blend_space)


def blend(encoder_probs: np.ndarray, lexical_probs: np.ndarray, weight: float,
          abstain: np.ndarray | None = None, space: str = DEFAULT_BLEND) -> np.ndarray:
    """The fused scores, the weighted mean of the two models' probabilities or of their log-odds (`space`, one of
    BLENDS); where the lexical model abstains (a label it saw no annotation of), the encoder's."""
    if space not in BLENDS:
        raise ValueError(f"unknown blend {space!r}: one of {', '.join(BLENDS)}")
    if weight == 0.0:  # the encoder alone, bit for bit (the log-odds' clipping would round it)
        return encoder_probs.astype(np.float32)
    if space == "logit":
        mixed = (1.0 - weight) * _logit(encoder_probs) + weight * _logit(lexical_probs)
        blended = (1.0 / (1.0 + np.exp(-mixed))).astype(np.float32)
    else:
        blended = ((1.0 - weight) * encoder_probs + weight * lexical_probs).astype(np.float32)
    if abstain is not None and abstain.any():
        blended[:, abstain] = encoder_probs[:, abstain]
    return blended


def _logit(probs: np.ndarray) -> np.ndarray:
    p = np.clip(probs.astype(np.float64), _LOGIT_CLIP, 1.0 - _LOGIT_CLIP)
    return np.log(p) - np.log1p(-p)


def fit_lexical(texts: Sequence[str], targets: np.ndarray, mask: np.ndarray, c: float = DEFAULT_C) -> LexicalModel:
    """TF-IDF on `texts`, then one logistic regression per label (inverse regularisation `c`) on its annotated
    rows (confidence >= 0.5 is positive). A label with no positive (or no negative) there gets zero weights and its
    prior as bias; a label with no annotated row at all is left to the encoder (`abstain`)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vectorizer = TfidfVectorizer(**{**VECTORIZER, "dtype": np.float32})
    x = vectorizer.fit_transform(texts)
    labels = targets.shape[1]
    coef = np.zeros((labels, x.shape[1]), dtype=np.float32)
    intercept = np.zeros(labels, dtype=np.float32)
    abstain = ~(mask > 0).any(axis=0)
    for j in range(labels):
        rows = mask[:, j] > 0
        y = targets[rows, j] >= 0.5
        if y.all() or not y.any():
            prior = (y.sum() + 0.5) / (len(y) + 1.0)
            intercept[j] = np.log(prior / (1 - prior))
            continue
        fitted = LogisticRegression(C=c, solver="liblinear", max_iter=200).fit(x[rows], y)
        coef[j], intercept[j] = fitted.coef_[0], fitted.intercept_[0]
    vocabulary = {term: int(i) for term, i in vectorizer.vocabulary_.items()}
    return LexicalModel(vocabulary, vectorizer.idf_.astype(np.float32), coef, intercept, c=c,
                        abstain=abstain if abstain.any() else None)


def out_of_fold_lexical(texts: Sequence[str], targets: np.ndarray, mask: np.ndarray, fold: np.ndarray,
                        c: float = DEFAULT_C) -> np.ndarray:
    """Every row's lexical probabilities from a model fitted on the other folds (the folds of cross-fitting)."""
    probs = np.zeros(targets.shape, dtype=np.float32)
    texts = list(texts)
    for k in np.unique(fold):
        held = fold == k
        model = fit_lexical([t for t, h in zip(texts, held, strict=True) if not h], targets[~held], mask[~held],
                            c)
        probs[held] = model.probabilities([t for t, h in zip(texts, held, strict=True) if h])
    return probs


def choose_weight(encoder_probs: np.ndarray, lexical_probs: np.ndarray, score: Callable[[np.ndarray], float],
                  abstain: np.ndarray | None = None,
                  space: str = DEFAULT_BLEND) -> tuple[float, list[tuple[float, float]]]:
    """The blend weight whose blended tuning scores `score` highest (ties: the smaller weight, so the
    transformer alone wins a tie), and every (weight, score) tried: each blended as prediction will blend it."""
    tried = [(w, score(blend(encoder_probs, lexical_probs, w, abstain, space))) for w in WEIGHTS]
    best = max(tried, key=lambda pair: (round(pair[1], 6), -pair[0]))
    return best[0], tried
