"""Long texts (model.long_text): what the encoder reads of an article, as one or more windows of token ids.

- truncate:  the first max_length tokens (special tokens included), as the tokenizer truncates;
- head_tail: the first head_tokens and the last ones, max_length in all (Sun et al. 2019: head + tail beat
             head-only on long reviews);
- chunks:    windows of max_length tokens, chunk_overlap tokens apart, at most max_chunks; each window is
             scored and the article's score pooled from its windows' (pool_logits), in training (the loss is
             computed on the pooled, article-level score: the labels belong to the article) as in prediction.

Every window is a whole encoder input: [CLS] content [SEP] as the tokenizer builds it. Training, validation,
eval, predict, serve and ONNX exports all go through `article_windows` and `pool_logits`, so an article is
read the same way everywhere (the ONNX graph scores windows; mlcls pools them, as for a torch run).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

MODES = ("truncate", "head_tail", "chunks")
POOLINGS = ("max_logit", "mean_logit", "mean_prob")
_EPS = 1e-7  # mean_prob's probability kept inside (0, 1) before it is turned back into a logit


@dataclass(frozen=True)
class WindowSpec:
    """What the encoder reads of an article (model.long_text): truncate, head_tail or chunks, with max_length,
    head_tokens, chunk_overlap, max_chunks and the chunks' pooling."""

    mode: str = "truncate"
    max_length: int = 128
    head_tokens: int | None = None
    overlap: int = 32
    max_chunks: int = 8
    pooling: str = "max_logit"

    @classmethod
    def from_config(cls, model) -> WindowSpec:
        """The spec of a config's `model` section."""
        return cls(model.long_text, model.max_length, model.head_tokens, model.chunk_overlap, model.max_chunks,
                   model.chunk_pooling)

    def describe(self) -> str:
        if self.mode == "head_tail":
            return f"head_tail ({self.max_length} tokens: head and tail)"
        if self.mode == "chunks":
            return (f"chunks of {self.max_length} tokens, {self.overlap} shared, at most {self.max_chunks}, "
                    f"pooled by {self.pooling}")
        return f"truncate at {self.max_length} tokens"


def content_ids(tokenizer, texts: Sequence[str]) -> list[list[int]]:
    """Every text's token ids without special tokens and without truncation (head_tail and chunks cut them)."""
    return tokenizer(list(texts), add_special_tokens=False, truncation=False, return_attention_mask=False,
                     verbose=False)["input_ids"]


def article_windows(tokenizer, texts: Sequence[str], spec: WindowSpec) -> list[list[list[int]]]:
    """Each text's windows (a list of encoder inputs, special tokens included), by the spec's mode."""
    if spec.mode == "truncate":  # the tokenizer's own truncation, exactly as before long-text modes existed
        ids = tokenizer(list(texts), truncation=True, max_length=spec.max_length, return_attention_mask=False)
        return [[list(row)] for row in ids["input_ids"]]
    return windows_of_content(tokenizer, content_ids(tokenizer, texts), spec)


def windows_of_content(tokenizer, content: Sequence[Sequence[int]], spec: WindowSpec) -> list[list[list[int]]]:
    """head_tail / chunks windows of token ids that carry no special tokens yet (content_ids)."""
    prefix, suffix = special_tokens(tokenizer)
    budget = spec.max_length - len(prefix) - len(suffix)

    def wrap(ids: list[int]) -> list[int]:
        return prefix + ids + suffix

    out = []
    for ids in content:
        ids = list(ids)
        if spec.mode == "head_tail":
            out.append([wrap(_head_and_tail(ids, budget, spec.head_tokens))])
        else:
            out.append([wrap(part) for part in _chunks(ids, budget, spec.overlap, spec.max_chunks)])
    return out


def special_tokens(tokenizer) -> tuple[list[int], list[int]]:
    """The ids the tokenizer puts before and after a single text ([CLS] and [SEP] for BERT, <s> and </s> for
    RoBERTa): read off how it encodes one word with and without them. (transformers 5's fast tokenizers have no
    build_inputs_with_special_tokens.)"""
    bare = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a", add_special_tokens=True)["input_ids"]
    for start in range(len(full) - len(bare) + 1):
        if full[start : start + len(bare)] == bare:
            return list(full[:start]), list(full[start + len(bare):])
    raise ValueError(f"{type(tokenizer).__name__}: cannot tell its special tokens apart from the text's")


def _head_and_tail(ids: list[int], budget: int, head: int | None) -> list[int]:
    if len(ids) <= budget:
        return ids
    head = budget // 4 if head is None else min(head, budget)
    return ids[:head] + (ids[len(ids) - (budget - head):] if budget > head else [])


def _chunks(ids: list[int], budget: int, overlap: int, max_chunks: int) -> list[list[int]]:
    """Windows of `budget` tokens, `budget - overlap` apart, at most `max_chunks`; an empty text is one empty
    window (the encoder still reads [CLS] [SEP], as truncate would)."""
    step = max(1, budget - overlap)
    starts = list(range(0, max(1, len(ids) - overlap), step))[:max_chunks]
    return [ids[start : start + budget] for start in starts] or [[]]


def flatten(windows: Sequence[Sequence[Sequence[int]]]) -> tuple[list[Sequence[int]], list[int]]:
    """(every window in article order, how many windows each article has)."""
    return [w for article in windows for w in article], [len(article) for article in windows]


def pool_logits(logits, counts: Sequence[int], pooling: str):
    """(articles, labels) logits from (windows, labels) logits (torch tensors), the windows of each article
    consecutive. Differentiable: training computes its loss on the result. One window per article is returned
    as it is."""
    import torch  # here: the training cache reads this module's content_ids without needing torch

    if all(count == 1 for count in counts):
        return logits
    parts = logits.split(list(counts))
    if pooling == "max_logit":
        return torch.stack([part.max(dim=0).values for part in parts])
    if pooling == "mean_logit":
        return torch.stack([part.mean(dim=0) for part in parts])
    probs = torch.stack([torch.sigmoid(part).mean(dim=0) for part in parts]).clamp(_EPS, 1 - _EPS)
    return torch.log(probs) - torch.log1p(-probs)


@dataclass
class WindowCount:
    """How many windows were scored for how many articles: what a long-text mode costs, said in summaries."""

    articles: int = 0
    windows: int = 0

    def add(self, windows: Sequence[Sequence[Sequence[int]]]) -> None:
        self.articles += len(windows)
        self.windows += sum(len(article) for article in windows)

    def describe(self) -> str:
        mean = self.windows / self.articles if self.articles else 0.0
        return f"{self.windows} windows scored for {self.articles} articles ({mean:.2f} per article)"
