"""Token ids and batches: no padding until a batch is formed, and batches of similar lengths.

Padding every text to max_length spends most of the compute on pad tokens (news articles vary from a
headline to many paragraphs); padding per batch, with batches drawn from texts of similar length,
removes most of it.

Inference batches are padded a little further, to a multiple of INFERENCE_PAD_MULTIPLE tokens, so that
`mlcls predict` keeps flat memory over any input length. Activations follow the batch's padded width; with
every width possible, each batch asks glibc's allocator for slightly different sizes, and its heap fragments
and keeps growing (its mmap threshold climbs to the largest block freed, so after the first batches most
activations come from the heap). With widths in steps of 16 the sizes repeat and freed blocks fit the next
batch. Measured (`mlcls predict --int8`, scripts/bench_predict.py): 847 MiB peak on 10k lines, 874 MiB on
100k; with tight padding it kept rising (scripts/bench_predict_allocator.py, one layer: 1,041 -> 1,206 MiB
over 36k lines). Pinning glibc's mmap threshold also kept memory flat (and lower) but mapped and zeroed
every activation afresh: 1.22x slower. PyTorch has no caching allocator on CPU that would do this for us. The
padded positions are masked, so scores do not change (tests/data/test_batching.py).

A pass shorter than the batch size (the last of a chunk; a server's call of a few articles) is filled up to the
next power of two rows with rows of one token (its last row's first), whose scores are dropped. On a CPU,
oneDNN compiles and keeps kernels for every (rows, width) a pass has (~2 MiB each:
scripts/bench_shape_memory.py); rows of any count from 1 to 16 times 8 widths are 128 shapes, powers of two 40.
A server's memory then stops growing once it has met them, and it meets fewer first-time compiles
(docs/benchmarks.md, "Serving": RSS over the load +9-14% -> +0-3%). Padded, the filling rows cost compute where
a pass holds just over a power of two (9 rows run as 16); the CPU scoring step that skips padding
(model/unpadded.py) computes one token of each. They were copies of the last row until that step existed, which
then computed every copied token. Measured and not kept: splitting such a pass (9 = 8 + 1) was no faster; rows
of 1, 2, 3, 4, 6, 8, 12 or 16 (less filling) kept most of the growth (+8-10%).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

INFERENCE_PAD_MULTIPLE = 16  # read at call time, so a benchmark can set it (scripts/bench_predict_allocator.py)


def set_inference_pad_multiple(multiple: int) -> None:
    """Pad inference batches to a multiple of `multiple` tokens (1: tight); for benchmarks of the allocator."""
    global INFERENCE_PAD_MULTIPLE
    INFERENCE_PAD_MULTIPLE = multiple


def tokenize(tokenizer, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """Token ids of `texts`, truncated to `max_length` (special tokens included), without padding."""
    return tokenizer(list(texts), truncation=True, max_length=max_length, return_attention_mask=False)[
        "input_ids"
    ]


def length_grouped_batches(
    lengths: Sequence[int], batch_size: int, rng: np.random.Generator, group_batches: int = 50
) -> list[np.ndarray]:
    """Shuffled training batches of similar-length texts.

    Shuffle everything, cut into groups of `group_batches` batches, sort each group by length, cut it
    into batches, then shuffle the batches: every epoch sees a new random order and a new grouping, so
    the gradient stays unbiased, while each batch pads to nearly its own length.
    """
    order = rng.permutation(len(lengths))
    lengths = np.asarray(lengths)
    batches: list[np.ndarray] = []
    span = batch_size * group_batches
    for start in range(0, len(order), span):
        group = order[start : start + span]
        group = group[np.argsort(lengths[group], kind="stable")]
        batches.extend(group[i : i + batch_size] for i in range(0, len(group), batch_size))
    rng.shuffle(batches)
    return batches


# training_passes splits a batch's rows in two only where that pads at least this share fewer tokens. Measured with
# scripts/bench_training_passes.py (the bundled MiniLM, bf16, 2-core EPYC; 24 Reuters training batches, the arms
# taking turns; docs/benchmarks.md, "Training passes split by width on the CPU"): on chunks of 128 (a chunked
# article's last window is short) splitting every batch ran 1.17-1.19x faster than one pass, at 3% 1.15-1.16x, at
# 10% 0.94-1.05x (two runs): the split saves more time than tokens (90.3% -> 98.4% real), since attention costs
# the square of a pass's width. On truncation at 128 (length-grouped: 99% real already) splitting every batch ran
# 0.96-0.99x (two passes cost more than they save), and at 3% 2 batches of 24 split (0.99-1.01x).
MIN_SPLIT_SAVING = 0.03


def training_passes(lengths: Sequence[int], min_saving: float | None = None) -> list[np.ndarray]:
    """A training batch's rows (by their lengths) in one pass, or in two each padded to its own longest row.

    Why: a pass pads every row to the longest. Batches group articles of similar total length, but a chunked
    article's windows are full but for its last, so a batch of long articles mixes 128-token windows with short
    ones. The split is the one that pads least (rows sorted longest first, cut where it saves most); it is taken
    when it saves `min_saving` (MIN_SPLIT_SAVING unless given) of the one pass's tokens. Each row keeps its own
    computation (its padding is masked either way); only the dropout masks are drawn in other shapes. One pass
    holds the rows in their own order."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    if len(order) < 2:
        return [np.arange(len(order))]
    sorted_lengths = np.asarray(lengths)[order]
    cuts = np.arange(1, len(order))
    padded = sorted_lengths[0] * cuts + sorted_lengths[cuts] * (len(order) - cuts)  # first pass + second pass
    best = int(np.argmin(padded))
    saving = MIN_SPLIT_SAVING if min_saving is None else min_saving
    if padded[best] > (1 - saving) * sorted_lengths[0] * len(order):
        return [np.arange(len(order))]  # one pass, rows in their own order
    return [order[: cuts[best]], order[cuts[best]:]]


def inference_batches(lengths: Sequence[int], batch_size: int) -> list[np.ndarray]:
    """Batches over texts sorted by length (longest first, so a memory problem shows at once)."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def round_up(count: int, multiple: int) -> int:
    """`count` rounded up to a multiple of `multiple`: a padded pass's width (pad_batch), and the rows the unpadded
    forward fills its packed tokens to (mlcls/model/unpadded.py)."""
    return -(-count // multiple) * multiple


def pad_batch(token_ids: Sequence[Sequence[int]], pad_id: int, multiple: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask) padded to the longest text, rounded up to a multiple of `multiple` tokens."""
    if multiple < 1:
        raise ValueError(f"multiple must be at least 1, got {multiple}")
    width = round_up(max(len(ids) for ids in token_ids), multiple)
    input_ids = torch.full((len(token_ids), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(token_ids), width), dtype=torch.long)
    for row, ids in enumerate(token_ids):
        input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention_mask[row, : len(ids)] = 1
    return input_ids, attention_mask


def bucket_rows(rows: int, batch_size: int) -> int:
    """The rows a pass of `rows` texts is filled up to: the next power of two, capped at `batch_size` (a full pass
    stays as it is)."""
    if rows >= batch_size:
        return rows
    return min(1 << (rows - 1).bit_length(), batch_size)


@torch.inference_mode()
def rows_by_length(model, compute, token_ids: Sequence[Sequence[int]], pad_id: int, batch_size: int, device,
                   width: int) -> np.ndarray:
    """`compute(input_ids, attention_mask)` -> (batch, width) over length-sorted batches padded to a multiple of
    INFERENCE_PAD_MULTIPLE tokens and filled to `bucket_rows` rows, with `model` in eval mode (restored after); rows
    come back in the order of `token_ids`, as float32."""
    was_training = model.training
    # eval() and train() set the flag on every submodule through nn.Module.__setattr__: 2-3 ms a call on the
    # bundled MiniLM, a tenth of what one served article costs. A loaded run is in eval mode already.
    # (An ONNX export's model, inference/onnx_run.py, has `training` and no submodules.)
    modules = model.modules() if isinstance(model, torch.nn.Module) else ()
    switched = model.training or any(module.training for module in modules)
    if switched:
        model.eval()
    out = np.zeros((len(token_ids), width), dtype=np.float32)
    for batch in inference_batches([len(ids) for ids in token_ids], batch_size):
        texts = [token_ids[i] for i in batch]
        # Rows that fill the pass: one token each (the shortest window's first). Padded, they cost what any row
        # costs; the CPU scoring step that skips padding (model/unpadded.py) computes one token for each.
        texts += [texts[-1][:1]] * (bucket_rows(len(texts), batch_size) - len(texts))
        input_ids, attention_mask = pad_batch(texts, pad_id, INFERENCE_PAD_MULTIPLE)
        rows = compute(input_ids.to(device), attention_mask.to(device))[: len(batch)]
        out[batch] = rows.float().cpu().numpy()
    if switched:
        model.train(was_training)
    return out
