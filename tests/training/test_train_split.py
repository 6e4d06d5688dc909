from __future__ import annotations

from mlcls.data.records import Record
from mlcls.training.split import hold_out


def test_hold_out_is_seeded_and_keeps_every_label_in_training():
    data = [Record(str(i), "t", {"common": 1.0}, i) for i in range(50)]
    data += [Record("rare", "t", {"rare": 1.0, "common": 1.0}, 51)]
    for seed in range(20):
        train, val = hold_out(data, 0.5, seed)
        assert len(train) + len(val) == len(data)
        assert any("rare" in r.labels for r in train)  # its only article never goes to validation
    assert hold_out(data, 0.2, 1) == hold_out(data, 0.2, 1)
    assert hold_out(data, 0.0, 1) == (data, [])


def test_a_labels_only_positive_stays_in_training_though_others_name_it_unannotated_or_below_half():
    """Another article naming the label with null (not annotated) or a confidence under 0.5 keeps it in the
    vocabulary, but gives the model no positive to learn from: the only article carrying it stays in train."""
    data = [Record(str(i), "t", {"common": 1.0}, i) for i in range(50)]
    data += [Record("rare", "t", {"rare": 1.0}, 51), Record("unsure", "t", {"rare": None, "common": 1.0}, 52),
             Record("weak", "t", {"rare": 0.2, "common": 1.0}, 53), Record("soft", "t", {"soft": 0.6}, 54)]
    moved = 0
    for seed in range(30):
        for stratified in (False, True):
            train, val = hold_out(data, 0.5, seed, stratified)
            assert len(train) + len(val) == len(data)
            assert any(r.id == "rare" for r in train) and any(r.id == "soft" for r in train)
            moved += any(r.id in ("unsure", "weak") for r in val)
    assert moved  # the seeds did put the other articles naming `rare` into validation: the case was met
