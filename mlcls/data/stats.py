"""`mlcls data stats`: what a labelled file holds, before anyone trains on it."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from mlcls.data.records import Record

HEAD_MIN = 35  # a head label has at least this many articles
TAIL_MAX = 7  # a tail label has at most this many; medium is in between
PERCENTILES = (50, 90, 95, 99)


def frequency_group(count: float, head_min: int = HEAD_MIN, tail_max: int = TAIL_MAX) -> str:
    if count >= head_min:
        return "head"
    return "tail" if count < tail_max + 1 else "medium"  # not <=: an old run's soft count (7.25) is no medium


def dataset_stats(records: list[Record], token_lengths: list[int] | None = None, max_length: int | None = None,
                  head_min: int = HEAD_MIN, tail_max: int = TAIL_MAX) -> dict[str, Any]:
    """Counts that a user checks first. A soft label counts from confidence 0.5; `null` entries do not."""
    per_record = [sorted(n for n, c in (r.labels or {}).items() if c is not None and c >= 0.5) for r in records]
    sizes = Counter(min(len(labels), 3) for labels in per_record)
    freq = Counter(label for labels in per_record for label in labels)
    groups: dict[str, list[str]] = {"head": [], "medium": [], "tail": []}
    for label, count in sorted(freq.items(), key=lambda kv: (-kv[1], kv[0])):
        groups[frequency_group(count, head_min, tail_max)].append(label)
    masked = sum(1 for r in records for c in (r.labels or {}).values() if c is None)
    soft = sum(1 for r in records for c in (r.labels or {}).values() if c is not None and 0 < c < 1)
    out: dict[str, Any] = {
        "records": len(records),
        "labels_per_record": {"0": sizes[0], "1": sizes[1], "2": sizes[2], "3+": sizes[3]},
        "mean_labels_per_record": float(np.mean([len(x) for x in per_record])) if records else 0.0,
        "distinct_labels": len(freq),
        "label_frequencies": dict(sorted(freq.items(), key=lambda kv: (-kv[1], kv[0]))),
        "groups": {name: {"labels": len(members), "articles_min": int(min((freq[m] for m in members), default=0)),
                          "articles_max": int(max((freq[m] for m in members), default=0)), "members": members}
                   for name, members in groups.items()},
        "group_rule": {"head_min": head_min, "tail_max": tail_max},
        "not_annotated_entries": masked,
        "soft_entries": soft,
    }
    if token_lengths is not None:
        lengths = np.asarray(token_lengths)
        out["tokens"] = {f"p{p}": int(np.percentile(lengths, p)) for p in PERCENTILES}
        out["tokens"].update(mean=float(lengths.mean()), max=int(lengths.max()))
        if max_length is not None:
            out["tokens"]["max_length"] = max_length
            out["tokens"]["share_truncated"] = float((lengths > max_length).mean())
    return out
