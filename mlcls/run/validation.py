"""One check of a finished run directory before anything loads it: `validate_run(path)`.

Every file the run needs is there and readable, the small files parse (each field of the type it must have),
and they agree with each other and with the weights: labels.json's labels, the head's rows, the per-label
cut-offs of thresholds.json (one for every label), label_stats.json's labels, the encoder's hidden size.
Weights are checked through their safetensors headers (a truncated file fails there: the header's offsets no
longer cover the file), so no model is built and no tensor is read: this costs milliseconds, and a broken run
fails with one line naming the file before minutes of loading or, worse, before it scores anything.

No file of the run may be a link out of its folder (an export copies what the run holds).

What it cannot see without loading the tokenizer (a tokenizer file that belongs to another model) is
checked after loading, by `loading.check_tokenizer_fits`. Bytes flipped inside a weights file whose header
is intact are not detected (safetensors keeps no checksum).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mlcls.atomic import describe_os_error
from mlcls.errors import RunDirError
from mlcls.run.files import read_config, read_json, read_label_stats, read_labels, read_rule
from mlcls.run.layout import (
    ENCODER,
    ENCODER_CONFIG,
    FOLDS,
    HEAD,
    LABELS,
    LEXICAL,
    LEXICAL_SETTINGS,
    LEXICAL_VOCABULARY,
    LEXICAL_WEIGHTS,
    METRICS,
    REQUIRED,
    SHARDED_WEIGHTS,
    TOKENIZER_CONFIG,
    WEIGHTS,
    model_folders,
)
from mlcls.run.lexical import lexical_weight

# Files that hold a tokenizer's vocabulary, as save_pretrained writes them (fast tokenizers: tokenizer.json;
# slow ones: one of the others). tokenizer_config.json is written beside them in every case.
VOCABULARY_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model",
                    "tokenizer.model")


def validate_run(path: str | Path) -> None:
    """Raise RunDirError (one line naming the file and the problem) unless `path` is a whole, consistent run."""
    path = Path(path)
    _need(path, folder=True)
    _no_links_out(path)
    for name in REQUIRED:
        _need(path / name)
    config = read_config(path)
    labels = read_labels(path).labels
    read_rule(path)  # its fields; whether it fits labels.json once the weights have said whether that is the run's
    for folder in _model_folders(path, config.train.folds):
        _model(folder, labels, path, native=config.model.head == "transformers")
    _lexical(path, len(labels))
    read_rule(path, labels)
    read_label_stats(path, labels)  # not needed to score, but when there, whole and of these labels


def validate_export(path: str | Path, required: tuple[str, ...]) -> None:
    """The same checks for an ONNX export (`mlcls export --format onnx`) before it loads: its `required`
    files there and readable, no link out of the folder, and its lexical model (when it carries one) whole
    and of its labels."""
    path = Path(path)
    _need(path, folder=True)
    _no_links_out(path)
    for name in required:
        _need(path / name)
    _lexical(path, len(read_labels(path).labels))


# ------------------------------------------------------------------------------------------ files


def _need(path: Path, folder: bool = False) -> None:
    """`path` exists, is a file (a folder), and can be read (listed)."""
    what = "folder" if folder else "file"
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise RunDirError(f"{path}: missing from the run directory (is this a complete mlcls run?)") from None
    except OSError as exc:
        raise RunDirError(f"{path}: cannot read ({describe_os_error(exc)})") from None
    import stat

    if folder != stat.S_ISDIR(mode):
        raise RunDirError(f"{path}: not a {what}")
    if not folder and not stat.S_ISREG(mode):  # a FIFO or a device (a tar can carry one): opening it could block
        raise RunDirError(f"{path}: not a regular file")
    try:
        if folder:
            os.listdir(path)
        else:
            os.close(os.open(path, os.O_RDONLY))
    except OSError as exc:
        raise RunDirError(f"{path}: cannot read ({describe_os_error(exc)})") from None


def _no_links_out(run: Path) -> None:
    """No file or folder in the run is a link to something outside it. A run is data that people pass around,
    and loading or exporting it reads (and an export copies) its files: a link to ~/.ssh/id_rsa named
    provenance.json would carry that file into an export the user then publishes. Links inside the run are
    harmless and allowed; the run folder itself may be a link (runs/latest)."""
    root = Path(os.path.realpath(run))
    folders = [root]
    while folders:
        folder = folders.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:  # an unreadable folder: the checks of the files the run needs name it
            continue
        for entry in entries:
            if entry.is_symlink():  # from the directory listing: no call that an unreadable file could fail
                target = Path(os.path.realpath(entry.path))  # a loop resolves to a path too (and fails later)
                if not target.is_relative_to(root):
                    raise RunDirError(f"{run / Path(entry.path).relative_to(root)}: a link to {target}, outside the "
                                      "run directory; mlcls reads no run file through a link out of it (copy the "
                                      "file in instead)")
            elif entry.is_dir(follow_symlinks=False):
                folders.append(Path(entry.path))


# ------------------------------------------------------------------------------------------ model files


def _model_folders(run: Path, folds: int) -> list[Path]:
    """The folders holding the model (layout.model_folders), checked to be there: all K of a cross-fitted run."""
    expected = model_folders(run, folds)
    if expected == [run]:
        return expected
    _need(run / FOLDS, folder=True)
    for folder in expected:
        if not folder.exists():
            raise RunDirError(f"{folder}: missing from the run directory (the run was trained with train.folds="
                              f"{folds}, and predicts with every fold's model)")
    return expected


def _model(folder: Path, labels: list[str], run: Path, native: bool = False) -> None:
    encoder = folder / ENCODER
    _need(encoder, folder=True)
    _need(encoder / ENCODER_CONFIG)
    config = read_json(encoder / ENCODER_CONFIG)
    if not isinstance(config, dict):
        raise RunDirError(f"{encoder / ENCODER_CONFIG}: corrupt (expected a JSON object)")
    _encoder_weights(encoder)
    _need(encoder / TOKENIZER_CONFIG)
    if not any((encoder / name).exists() for name in VOCABULARY_FILES):
        raise RunDirError(f"{encoder}: the tokenizer's vocabulary is missing (none of {', '.join(VOCABULARY_FILES)}"
                          "); without it every word would be an unknown token")
    for name in VOCABULARY_FILES:
        if (encoder / name).exists():
            _need(encoder / name)
            if name.endswith(".json"):
                read_json(encoder / name)
    if native:
        _native_head(encoder / ENCODER_CONFIG, config, labels, run)
    else:
        _head(folder / HEAD, len(labels), config.get("hidden_size"), run)


def _native_head(path: Path, config: dict, labels: list[str], run: Path) -> None:
    """model.head transformers: the head is inside encoder/, and its config names the run's labels in order
    (transformers.pipeline answers with those names) and scores them with a sigmoid."""
    id2label = config.get("id2label")
    if not isinstance(id2label, dict) or not config.get("architectures"):
        raise RunDirError(f"{path}: not a sequence-classification model (no id2label or architectures), but the "
                          "run was trained with model.head transformers")
    try:
        names = [id2label[key] for key in sorted(id2label, key=int)]
    except (TypeError, ValueError):
        raise RunDirError(f"{path}: corrupt (id2label keys are not label numbers)") from None
    if names != labels:
        raise RunDirError(f"{path}: its id2label ({len(names)} labels) differs from {run / LABELS} "
                          f"({len(labels)}): the files come from different runs")
    if config.get("problem_type") != "multi_label_classification":
        raise RunDirError(f"{path}: problem_type is {config.get('problem_type')!r}, not multi_label_classification "
                          "(transformers would score it with a softmax)")


def _encoder_weights(encoder: Path) -> None:
    if (encoder / WEIGHTS).exists():
        shards = [encoder / WEIGHTS]
    elif (encoder / SHARDED_WEIGHTS).exists():
        index = read_json(encoder / SHARDED_WEIGHTS)
        weight_map = index.get("weight_map") if isinstance(index, dict) else None
        if not isinstance(weight_map, dict) or not weight_map:
            raise RunDirError(f"{encoder / SHARDED_WEIGHTS}: corrupt (no weight_map)")
        names = sorted({str(name) for name in weight_map.values()})
        for name in names:  # read before transformers is: a name like ../../x would open a file outside the run
            if Path(name).name != name or name in (".", ".."):
                raise RunDirError(f"{encoder / SHARDED_WEIGHTS}: corrupt (the shard {name!r} is not a file name "
                                  "in this folder)")
        shards = [encoder / name for name in names]
    else:
        other = [p.name for p in encoder.glob("*.bin")] + [p.name for p in encoder.glob("*.pt")]
        extra = f" ({', '.join(other)} found: weights are loaded only from safetensors)" if other else ""
        raise RunDirError(f"{encoder / WEIGHTS}: missing from the run directory{extra}")
    for shard in shards:
        _need(shard)
        _safetensors_shapes(shard, "corrupt or truncated, not a whole safetensors file")


def _head(path: Path, num_labels: int, hidden_size: Any, run: Path) -> None:
    _need(path)
    shapes = _safetensors_shapes(path, f"corrupt or does not match {LABELS}")
    weight = shapes.get("head.weight")
    bias = shapes.get("head.bias")
    if weight is None or bias is None or len(weight) != 2 or len(bias) != 1:
        raise RunDirError(f"{path}: corrupt or does not match {LABELS} (expected tensors head.weight and "
                          f"head.bias, found {', '.join(sorted(shapes)) or 'none'})")
    if weight[0] != num_labels or bias[0] != num_labels:
        raise RunDirError(f"{path}: the head scores {weight[0]} labels but {run / LABELS} has {num_labels}: "
                          "the files come from different runs")
    if isinstance(hidden_size, int) and weight[1] != hidden_size:
        raise RunDirError(f"{path}: the head takes {weight[1]} inputs but the encoder's hidden size is "
                          f"{hidden_size} ({path.parent / ENCODER / ENCODER_CONFIG}): the files come from "
                          "different runs")


def _lexical(run: Path, num_labels: int) -> None:
    """model.lexical: tfidf runs blend a TF-IDF model in (lexical/): whole, with a row per label; and present
    when metrics.json says the run blends it at a weight above 0 (without it the scores would silently be the
    encoder's alone, which the rule was not tuned on)."""
    folder = run / LEXICAL
    if not folder.exists():
        weight = lexical_weight(run)  # from metrics.json, which is not needed to score: no verdict without it
        if weight is not None and weight > 0:
            raise RunDirError(f"{folder}: missing from the run directory ({run / METRICS} says the run blends this "
                              f"lexical model in at weight {weight:g})")
        return
    _need(folder, folder=True)
    for name in (LEXICAL_SETTINGS, LEXICAL_VOCABULARY):
        _need(folder / name)
        read_json(folder / name)
    _need(folder / LEXICAL_WEIGHTS)
    shapes = _safetensors_shapes(folder / LEXICAL_WEIGHTS, "corrupt or truncated, not a whole safetensors file")
    rows = [shapes.get(name, [None])[0] for name in ("coef", "intercept")]
    if rows != [num_labels, num_labels]:
        raise RunDirError(f"{folder / LEXICAL_WEIGHTS}: the lexical model scores {rows[0]} labels but "
                          f"{run / LABELS} has {num_labels}: the files come from different runs")


def _safetensors_shapes(path: Path, problem: str) -> dict[str, list[int]]:
    """Tensor name -> shape, from the header alone. safetensors checks there that the header's offsets cover
    the file exactly, so a truncated (or extended) file fails here."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy") as handle:
            return {name: list(handle.get_slice(name).get_shape()) for name in handle.keys()}  # noqa: SIM118
    except SafetensorError as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise RunDirError(f"{path}: {problem} ({detail})") from None
    except OSError as exc:
        raise RunDirError(f"{path}: cannot read ({describe_os_error(exc)})") from None
