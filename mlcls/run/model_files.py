"""The model of a run: encoder/ (save_pretrained: weights in safetensors, the tokenizer beside them) and
head.safetensors, written and read back here. With model.head transformers, encoder/ holds the whole
AutoModelForSequenceClassification (head inside) and there is no head.safetensors.

Weights are loaded from safetensors only. Remote code (`trust_remote_code`) runs only when the caller says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlcls.atomic import open_permissions
from mlcls.config import Config
from mlcls.errors import RunDirError, first_line
from mlcls.model.classifier import MultiLabelClassifier, NativeClassifier
from mlcls.run.files import peek_dict
from mlcls.run.layout import CONFIG, ENCODER, ENCODER_CONFIG, HEAD, LABELS, TOKENIZER_CONFIG
from mlcls.run.lifecycle import run_write_error


def save_model(run: Path, model, tokenizer) -> None:
    """encoder/ (save_pretrained: weights in safetensors, the tokenizer beside them) and head.safetensors; with
    model.head transformers the whole AutoModelForSequenceClassification in encoder/, head inside."""
    from safetensors.torch import save_file

    try:
        if isinstance(model, NativeClassifier):
            model.model.save_pretrained(run / ENCODER)
        else:
            model.encoder.save_pretrained(run / ENCODER)
            save_file(model.head_state(), str(run / HEAD))
        tokenizer.save_pretrained(run / ENCODER)
        open_permissions(run / ENCODER, *([run / HEAD] if (run / HEAD).is_file() else []))
    except Exception as exc:
        raise run_write_error(run, run, "the model", exc) from None


def remote_code_requests(model_dirs: list[Path], config: Config) -> list[str]:
    """What in a run (or an export) asks to run code from its own folder: model.trust_remote_code in its
    config.yaml, an `auto_map` in a model's or a tokenizer's config. A run is data that people share; the code
    it carries runs only when the command that loads it is told so (--trust-remote-code), never because the
    run says so. `model_dirs`: the folders holding save_pretrained's files (a run's encoder/, an export itself)."""
    found = [f"model.trust_remote_code: true in its {CONFIG}"] if config.model.trust_remote_code else []
    for folder in model_dirs:
        for path in (folder / ENCODER_CONFIG, folder / TOKENIZER_CONFIG):
            if "auto_map" in (peek_dict(path) or {}):
                found.append(f"an auto_map in {path}")
    return found


def check_remote_code(run: Path, model_dirs: list[Path], config: Config, trusted: bool) -> None:
    """Refuse, in one line, a run that asks to run its own code when the user has not allowed it."""
    asked = remote_code_requests(model_dirs, config)
    if asked and not trusted:
        raise RunDirError(f"{run}: this run asks to run code from its folder ({'; '.join(asked)}); mlcls runs none "
                          "unless you allow it for this command: add --trust-remote-code if you trust its source")


def load_model(folder: Path, config: Config, num_labels: int, trust_remote_code: bool = False,
               encoder_settings: dict[str, Any] | None = None):
    """(classifier, tokenizer) of one model folder (encoder/ + head.safetensors; with model.head transformers
    encoder/ alone, the whole AutoModelForSequenceClassification), checked to be whole. `trust_remote_code`:
    the caller's decision (check_remote_code), never the run's own config. `encoder_settings`: configuration
    overrides for from_pretrained (a training started from the run: model.attention_dropout)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

    trust = trust_remote_code
    native = config.model.head == "transformers"
    kind = AutoModelForSequenceClassification if native else AutoModel
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder / ENCODER, trust_remote_code=trust)
        encoder, loading = kind.from_pretrained(folder / ENCODER, use_safetensors=True, trust_remote_code=trust,
                                                output_loading_info=True, **(encoder_settings or {}))
    except Exception as exc:  # transformers raises many kinds (a config value of the wrong type, tensors of the
        # wrong shape, ...): what is wrong is the folder, and the user gets one line that names it
        first = first_line(exc)
        raise RunDirError(f"{folder / ENCODER}: cannot load ({first})") from None
    # transformers fills tensors the weights file lacks with random values and says so in a warning only: a run
    # would then score at random. save_pretrained writes every tensor, so a run's encoder lacks none.
    missing = sorted(loading.get("missing_keys") or ()) + sorted(str(key[0]) for key in
                                                                 loading.get("mismatched_keys") or ())
    if missing:
        raise RunDirError(f"{folder / ENCODER}: the weights file lacks {len(missing)} of the tensors that its "
                          f"{ENCODER_CONFIG} asks for (first: {missing[0]}); it belongs to another model or is cut")
    check_tokenizer_fits(folder / ENCODER, tokenizer, encoder)
    if native:
        return NativeClassifier(encoder), tokenizer
    model = MultiLabelClassifier(encoder, num_labels, config.model.pooling, config.model.dropout)
    try:
        head = load_file(str(folder / HEAD))
        model.head.load_state_dict({k.removeprefix("head."): v for k, v in head.items()})
    except (SafetensorError, RuntimeError, OSError) as exc:
        raise RunDirError(f"{folder / HEAD}: corrupt or does not match {LABELS} ({exc})") from None
    return model, tokenizer


def check_tokenizer_fits(folder: Path, tokenizer, encoder) -> None:
    """A run whose tokenizer file is gone still loads: transformers builds a tokenizer from what is left (a
    handful of special tokens), every word becomes [UNK], and every article scores the same. A tokenizer
    must cover (nearly) the encoder's vocabulary: embedding tables may be padded past it, never 10x larger."""
    embeddings = encoder.get_input_embeddings().num_embeddings
    if len(tokenizer) > embeddings or len(tokenizer) < 0.9 * embeddings:
        raise RunDirError(f"{folder}: the tokenizer has {len(tokenizer)} tokens but the encoder's vocabulary has "
                          f"{embeddings} (a tokenizer file is missing or belongs to another model)")
