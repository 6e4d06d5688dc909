"""Work that is the same from run to run, done once: token ids (through `datasets`) and frozen embeddings.

People train the same data many times while they try losses. Tokenizing is cheap next to an epoch but
not free, and encoding every text with a frozen encoder is most of a `--freeze-encoder` run, so both
are cached under a key that changes whenever anything that shapes the result changes: the tokenizer
(its full serialisation), max_length, the texts, and for embeddings the encoder's weights and pooling.
A cache entry is written under a temporary name and renamed, so a killed run never leaves half of one.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mlcls.atomic import atomic_open, describe_os_error
from mlcls.data.windows import content_ids
from mlcls.errors import MlclsError

CACHE_FORMAT = 1  # bump when what is cached changes meaning


def cache_root(configured: str | None = None) -> Path:
    """train.cache_dir, else $MLCLS_CACHE_DIR (set and not empty: an empty one would mean the working folder),
    else ~/.cache/mlcls."""
    if configured:
        return Path(configured).expanduser()
    return Path(os.environ.get("MLCLS_CACHE_DIR") or Path.home() / ".cache" / "mlcls").expanduser()


def usable_cache(root: Path) -> tuple[Path, str | None]:
    """`root` when this process can write there; else a temporary folder for this training alone, and the note
    that says why: a read-only home or shared cache must not stop a training (it crashed in `datasets`)."""
    try:
        (root / "tokens").mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=root / "tokens"):
            pass
        return root, None
    except OSError as exc:
        why = describe_os_error(exc)
    try:
        temporary = Path(tempfile.mkdtemp(prefix="mlcls-cache-"))
    except OSError as exc:
        raise MlclsError(f"{root}: the cache folder cannot be written ({why}), nor a temporary folder "
                         f"({describe_os_error(exc)}): set train.cache_dir or MLCLS_CACHE_DIR to a writable "
                         "folder") from None
    return temporary, (f"{root}: the cache folder cannot be written ({why}): this training caches in {temporary}, "
                       "removed at its end; set train.cache_dir or MLCLS_CACHE_DIR to keep the cache")


def tokenizer_fingerprint(tokenizer) -> str:
    """Everything that decides the token ids: the fast tokenizer's full JSON (vocabulary, normaliser,
    pre-tokeniser, post-processor), or the vocabulary and class of a slow one."""
    h = hashlib.sha256(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        # Truncation and padding are the settings of the last call (transformers sets them on the backend
        # per call), not properties of the tokenizer: left out, or the key would change after first use.
        spec = json.loads(backend.to_str())
        spec.pop("truncation", None)
        spec.pop("padding", None)
        h.update(json.dumps(spec, sort_keys=True).encode())
    else:
        h.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    h.update(repr(getattr(tokenizer, "model_max_length", None)).encode())
    return h.hexdigest()


def texts_fingerprint(texts: Sequence[str]) -> str:
    h = hashlib.sha256()
    for text in texts:
        encoded = text.encode("utf-8", "surrogatepass")
        h.update(len(encoded).to_bytes(8, "little"))  # lengths keep ["ab", "c"] apart from ["a", "bc"]
        h.update(encoded)
    return h.hexdigest()


def token_ids_fingerprint(token_ids: Sequence[Sequence[int]]) -> str:
    h = hashlib.sha256()
    for ids in token_ids:
        h.update(np.asarray(ids, dtype=np.int64).tobytes())
        h.update(b"|")
    return h.hexdigest()


def weights_fingerprint(module) -> str:
    """A hash of every parameter and buffer, by name: a different checkpoint of the same encoder, or
    the same one fine-tuned, gets a different key."""
    import torch

    h = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        h.update(name.encode())
        h.update(str(tensor.dtype).encode())
        h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _key(*parts: object) -> str:
    return hashlib.sha256(json.dumps([CACHE_FORMAT, *parts]).encode()).hexdigest()[:32]


def cached_token_ids(tokenizer, texts: Sequence[str], max_length: int | None,
                     root: Path) -> tuple[list[list[int]], bool]:
    """Token ids of `texts` (truncated to `max_length`, no padding; None: whole, without special tokens, for the
    long-text modes to cut into windows) and whether they came from the cache.

    `datasets` does the caching: `map` with an explicit cache file loads that file when it exists and
    otherwise writes it (to a temporary file first). Our key is its fingerprint.
    """
    if not texts:  # no validation data: nothing to tokenize (datasets cannot map an empty table)
        return [], False
    import datasets

    key = _key("tokens", tokenizer_fingerprint(tokenizer), max_length, texts_fingerprint(texts))
    path = root / "tokens" / f"{key}.arrow"
    hit = path.is_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    datasets.disable_progress_bars()

    def encode(batch: dict[str, list[str]]) -> dict[str, list[list[int]]]:
        if max_length is None:
            return {"input_ids": content_ids(tokenizer, batch["text"])}
        return {"input_ids": tokenizer(batch["text"], truncation=True, max_length=max_length,
                                       return_attention_mask=False)["input_ids"]}

    table = datasets.Dataset.from_dict({"text": list(texts)}).map(
        encode, batched=True, batch_size=1000, remove_columns=["text"], cache_file_name=str(path),
        load_from_cache_file=True, new_fingerprint=key,
    )
    return [list(ids) for ids in table.with_format(None)["input_ids"]], hit


def cached_embeddings(model, token_ids: Sequence[Sequence[int]], pad_id: int, batch_size: int, device,
                      fingerprint: str, root: Path) -> tuple[np.ndarray, bool]:
    """Pooled encoder vectors (records, hidden) for a frozen encoder, and whether they came from the cache.

    `fingerprint` names the encoder's weights and the pooling; the token ids name tokenizer, texts and
    max_length. Computed in eval mode (no dropout): the head's own dropout still applies in training.
    """
    from mlcls.data.batching import rows_by_length  # torch: not at import (`mlcls data reuters` reads cache_root)

    key = _key("embeddings", fingerprint, model.pooling, token_ids_fingerprint(token_ids))
    path = root / "embeddings" / f"{key}.npy"
    if path.is_file():
        return np.load(path), True

    out = rows_by_length(model, model.pool, token_ids, pad_id, batch_size, device, model.head.in_features)
    with atomic_open(path, "wb") as handle:
        np.save(handle, out)
    return out, False
