"""What the model reads in training: each article's windows of token ids (model.long_text: one window, or
several with chunks), tokenized once and cached on disk; with a frozen encoder, their pooled vectors."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from mlcls.config import Config
from mlcls.data.batching import pad_batch, training_passes
from mlcls.data.windows import WindowSpec, flatten, pool_logits, windows_of_content
from mlcls.inference.scoring import score_windows
from mlcls.training.cache import cache_root, cached_embeddings, cached_token_ids, usable_cache, weights_fingerprint
from mlcls.training.data import TrainingData

Windows = list[list[list[int]]]  # per article, its encoder inputs


@dataclass
class Inputs:
    train: Windows
    val: Windows
    train_vectors: torch.Tensor | None  # frozen encoder: one pooled vector per article instead of token ids
    val_vectors: torch.Tensor | None

    @property
    def windows_per_article(self) -> float:
        """What a long-text mode costs in training: the summary line and metrics.json both say it."""
        return sum(map(len, self.train)) / max(1, len(self.train))

    def describe(self) -> str:
        return (f"{sum(map(len, self.train))} training windows for {len(self.train)} articles "
                f"({self.windows_per_article:.2f} each)")


def prepare_inputs(config: Config, data: TrainingData, accelerator, model, tokenizer, pad_id: int,
                   console: Console) -> Inputs:
    """Windows of both sets (their token ids cached); with a frozen encoder, their pooled embeddings too."""
    cache, note = usable_cache(cache_root(config.train.cache_dir))
    if note:
        console.print(f"note: {note}", markup=False, soft_wrap=True)
    spec = WindowSpec.from_config(config.model)
    try:
        with accelerator.main_process_first():  # the first process fills the caches, the others read them
            (train, cached), (val, _) = (_windows(tokenizer, [r.text for r in records], spec, cache)
                                         for records in (data.train, data.validation))
            console.print(f"token ids {'reused from' if cached else 'cached in'} {cache / 'tokens'}", markup=False)
            if spec.mode != "truncate":
                console.print(f"long texts: {spec.describe()}; {Inputs(train, val, None, None).describe()}",
                              markup=False)
            if not config.train.freeze_encoder:
                return Inputs(train, val, None, None)
            vectors = frozen_embeddings(model, [[w[0] for w in train], [w[0] for w in val]], pad_id, config,
                                        accelerator.device, cache, console)
        return Inputs(train, val, *vectors)
    finally:
        if note:  # a temporary cache: everything it held is in memory now
            shutil.rmtree(cache, ignore_errors=True)


def _windows(tokenizer, texts: list[str], spec: WindowSpec, cache: Path) -> tuple[Windows, bool]:
    if spec.mode == "truncate":  # the tokenizer's own truncation: one window an article, as before
        ids, hit = cached_token_ids(tokenizer, texts, spec.max_length, cache)
        return [[row] for row in ids], hit
    content, hit = cached_token_ids(tokenizer, texts, None, cache)  # whole texts, cut here (cheap)
    return windows_of_content(tokenizer, content, spec), hit


def frozen_embeddings(model, token_ids: list[list[list[int]]], pad_id: int, config: Config, device, cache: Path,
                      console: Console) -> list[torch.Tensor]:
    """Pooled vectors of each list of texts from the frozen encoder: computed once, cached on disk."""
    fingerprint = weights_fingerprint(model.encoder)
    out = []
    for ids in token_ids:
        vectors, hit = cached_embeddings(model, ids, pad_id, config.train.eval_batch_size, device, fingerprint, cache)
        console.print(f"frozen encoder: {len(ids)} embeddings {'reused from' if hit else 'computed, cached in'} "
                      f"{cache / 'embeddings'}", markup=False)
        out.append(torch.from_numpy(vectors))
    return out


def batch_logits(model, inputs: Inputs, batch: np.ndarray, pad_id: int, device, pooling: str,
                 split: bool = False) -> torch.Tensor:
    """The articles' logits of one training batch: their windows encoded, pooled per article (the loss is the
    article's: its labels belong to it, not to each window). With `split`, the windows may go through the encoder in
    two passes, each padded to its own longest (training_passes); autograd carries both into one backward."""
    if inputs.train_vectors is not None:
        return model(pooled=inputs.train_vectors[batch].to(device))
    flat, counts = flatten([inputs.train[i] for i in batch])
    passes = training_passes([len(ids) for ids in flat]) if split else [np.arange(len(flat))]
    parts = []
    for rows in passes:
        input_ids, attention_mask = pad_batch([flat[i] for i in rows], pad_id)
        parts.append(model(input_ids.to(device), attention_mask.to(device)))
    if len(parts) > 1:  # back to the windows' order (an article's windows consecutive), as pool_logits reads them
        parts = [torch.cat(parts)[torch.from_numpy(np.argsort(np.concatenate(passes)))]]
    return pool_logits(parts[0], counts, pooling)  # one pass holds the windows in their own order


def validation_scores(model, inputs: Inputs, pad_id: int, config: Config, device) -> np.ndarray:
    if inputs.val_vectors is None:
        return score_windows(model, inputs.val, pad_id, config.train.eval_batch_size, device,
                             pooling=config.model.chunk_pooling)
    model.eval()
    with torch.inference_mode():
        probs = torch.sigmoid(model(pooled=inputs.val_vectors.to(device)).float()).cpu().numpy()
    model.train()
    return probs


def article_lengths(inputs: Inputs) -> list[int]:
    """Tokens an article puts through the encoder: what length-grouped batches group by."""
    return [sum(len(w) for w in article) for article in inputs.train]
