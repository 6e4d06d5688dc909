"""lexical/ of a run (model.lexical: tfidf): the TF-IDF model's writer and reader, and the one reader of the
weight at which the run blends it in. Saved without pickle, which runs code when loaded."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mlcls.atomic import open_permissions
from mlcls.data.labels import is_int, is_number
from mlcls.errors import RunDirError
from mlcls.model.lexical import BLENDS, DEFAULT_BLEND, DEFAULT_C, LexicalModel
from mlcls.run.files import peek_dict, peek_metrics
from mlcls.run.layout import LEXICAL, LEXICAL_SETTINGS, LEXICAL_VOCABULARY, LEXICAL_WEIGHTS


def save_lexical(run: Path, model: LexicalModel) -> None:
    from safetensors.numpy import save_file

    folder = run / LEXICAL
    folder.mkdir(parents=True, exist_ok=True)
    (folder / LEXICAL_VOCABULARY).write_text(json.dumps(model.vocabulary, ensure_ascii=False), encoding="utf-8")
    tensors = {"idf": model.idf.astype(np.float32), "coef": model.coef.astype(np.float32),
               "intercept": model.intercept.astype(np.float32)}
    if model.abstain is not None:  # only where some label was never annotated: other runs' files are unchanged
        tensors["abstain"] = model.abstain.astype(np.uint8)
    save_file(tensors, str(folder / LEXICAL_WEIGHTS))
    open_permissions(folder / LEXICAL_WEIGHTS)
    settings = {"weight": model.weight, "blend": model.blend_space, "vectorizer": model.settings, "C": model.c}
    (folder / LEXICAL_SETTINGS).write_text(json.dumps(settings, indent=1))


def load_lexical(run: Path) -> LexicalModel | None:
    """The run's lexical model, or None when it blends none in."""
    folder = run / LEXICAL
    if not folder.is_dir():
        return None
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        weights = load_file(str(folder / LEXICAL_WEIGHTS))
        settings = _checked_settings(folder / LEXICAL_SETTINGS, json.loads((folder / LEXICAL_SETTINGS).read_text()))
        vocabulary = _checked_vocabulary(folder / LEXICAL_VOCABULARY,
                                         json.loads((folder / LEXICAL_VOCABULARY).read_text(encoding="utf-8")))
        model = LexicalModel(vocabulary, weights["idf"], weights["coef"], weights["intercept"],
                             float(settings["weight"]), settings["vectorizer"], float(settings.get("C", DEFAULT_C)),
                             abstain=weights["abstain"].astype(bool) if "abstain" in weights else None,
                             # runs saved before model.lexical_blend blended probabilities
                             blend_space=settings.get("blend", DEFAULT_BLEND))
    except (OSError, ValueError, KeyError, SafetensorError) as exc:
        raise RunDirError(f"{folder}: the lexical model cannot be read ({exc})") from None
    if model.blend_space not in BLENDS:
        raise RunDirError(f"{folder / LEXICAL_SETTINGS}: blend {model.blend_space!r} is not one of "
                          f"{', '.join(BLENDS)}")
    if (model.coef.shape != (len(model.intercept), len(model.idf)) or len(vocabulary) != len(model.idf)
            or (model.abstain is not None and model.abstain.shape != model.intercept.shape)):
        raise RunDirError(f"{folder}: vocabulary, idf and coefficients do not match")
    return model


# The vectorizer settings mlcls writes (model.lexical's VECTORIZER) and their types. settings.json is passed to
# scikit-learn's TfidfVectorizer, so nothing else is let through: `"input": "filename"` there would make it open
# every article's text as a path on the machine that scores it (`mlcls serve` included).
VECTORIZER_TYPES: dict[str, tuple[type, ...]] = {"sublinear_tf": (bool,), "lowercase": (bool,), "min_df": (int, float),
                                                 "dtype": (str,)}


def _checked_settings(path: Path, settings: object) -> dict:
    """lexical/settings.json, checked before anything in it is used: ValueError names what is wrong."""
    if not isinstance(settings, dict):
        raise ValueError(f"{path.name}: expected a JSON object")
    weight = settings.get("weight")
    if not (is_number(weight) and 0.0 <= weight <= 1.0):  # NaN would make every score NaN
        raise ValueError(f"{path.name}: weight must be a number in [0, 1], got {weight!r}")
    c = settings.get("C", DEFAULT_C)
    if not (is_number(c) and c > 0):
        raise ValueError(f"{path.name}: C must be a positive number, got {c!r}")
    vectorizer = settings.get("vectorizer")
    if not isinstance(vectorizer, dict):
        raise ValueError(f"{path.name}: vectorizer must be an object of settings, got {vectorizer!r}")
    for key, value in vectorizer.items():
        if key not in VECTORIZER_TYPES:
            raise ValueError(f"{path.name}: vectorizer setting {key!r} is not one mlcls writes "
                             f"({', '.join(VECTORIZER_TYPES)})")
        if not isinstance(value, VECTORIZER_TYPES[key]) or (bool not in VECTORIZER_TYPES[key]
                                                             and isinstance(value, bool)):
            raise ValueError(f"{path.name}: vectorizer setting {key!r} has the wrong type ({value!r})")
    return settings


def _checked_vocabulary(path: Path, vocabulary: object) -> dict[str, int]:
    """lexical/vocabulary.json: term -> column, the columns 0..n-1 each once (ValueError otherwise)."""
    if not isinstance(vocabulary, dict) or not all(is_int(index) for index in vocabulary.values()):
        raise ValueError(f"{path.name}: expected an object of term -> column number")
    if sorted(vocabulary.values()) != list(range(len(vocabulary))):
        raise ValueError(f"{path.name}: the column numbers are not 0..{len(vocabulary) - 1}, each once")
    return vocabulary


def lexical_blend(run: Path) -> str:
    """What the run's blend averages (model.lexical_blend), from lexical/settings.json without loading the model:
    "probability" for runs saved before the key (load_lexical refuses an unknown one)."""
    blend = (peek_dict(run / LEXICAL / LEXICAL_SETTINGS) or {}).get("blend", DEFAULT_BLEND)
    return blend if blend in BLENDS else DEFAULT_BLEND


def lexical_weight(run: Path) -> float | None:
    """The weight at which the run blends its lexical model in, without loading the model: from lexical/'s
    settings when the folder is there, else what metrics.json says; None when neither says."""
    settings = peek_dict(run / LEXICAL / LEXICAL_SETTINGS) if (run / LEXICAL).exists() else peek_metrics(run)
    weight = (settings or {}).get("weight" if (run / LEXICAL).exists() else "lexical_weight")
    return float(weight) if isinstance(weight, int | float) and not isinstance(weight, bool) else None
