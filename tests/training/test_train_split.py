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
