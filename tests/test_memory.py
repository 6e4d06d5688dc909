"""The allocator setting behind predict's flat memory (its effect is measured in scripts/bench_predict.py)."""

import platform

from mlcls.memory import pin_mmap_threshold


def test_pin_mmap_threshold_takes_effect_on_glibc_and_is_a_no_op_elsewhere():
    assert pin_mmap_threshold() is (platform.system() == "Linux" and platform.libc_ver()[0] == "glibc")
