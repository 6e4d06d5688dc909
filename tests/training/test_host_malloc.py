"""glibc's malloc as `mlcls train` sets it (mlcls/training/host_malloc.py): blocks up to 32 MiB come from the heap
and stay there when freed, glibc's own settings win, and the CLI sets it before training."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from mlcls.training import host_malloc

glibc = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")

# In a fresh interpreter (an allocator's settings are per process): malloc 20 MiB and ask mallinfo2 by how many bytes
# that grew glibc's mmapped blocks, which it returns to the kernel on free.
PROBE = """
import ctypes, json, sys
from mlcls.training.host_malloc import keep_freed_memory
set_ = keep_freed_memory() if sys.argv[1] == "set" else False
libc = ctypes.CDLL("libc.so.6")
class Info(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                      "fsmblks", "uordblks", "fordblks", "keepcost")]
libc.mallinfo2.restype = Info
libc.malloc.restype = ctypes.c_void_p
before = libc.mallinfo2().hblkhd
block = libc.malloc(20 << 20)
print(json.dumps({"set": set_, "mmapped": libc.mallinfo2().hblkhd - before}))
"""


def _probe(mode: str, env: dict[str, str] | None = None) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout)


@glibc
def test_a_20_mib_block_comes_from_the_heap_once_set():
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES" and not k.startswith("MALLOC_")}
    as_it_comes, kept = _probe("default", env), _probe("set", env)
    assert as_it_comes == {"set": False, "mmapped": pytest.approx(20 << 20, abs=8192)}
    assert kept == {"set": True, "mmapped": 0}


@glibc
def test_the_users_own_glibc_settings_win():
    env = {**os.environ, "MALLOC_TOP_PAD_": "131072"}
    assert _probe("set", env) == {"set": False, "mmapped": pytest.approx(20 << 20, abs=8192)}


def test_what_counts_as_the_users_own_setting():
    assert host_malloc.user_set_malloc({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"})
    assert host_malloc.user_set_malloc({"MALLOC_ARENA_MAX": "2"})  # glibc's variables, with or without a final _
    assert host_malloc.user_set_malloc({"MALLOC_TOP_PAD_": "0"})
    assert not host_malloc.user_set_malloc({"PATH": "/bin", "MALLOCATOR": "x"})


def test_mlcls_train_sets_it_before_training(monkeypatch):
    from mlcls.cli import app

    calls = []

    class Stop(Exception):
        pass

    def training(*args, **kwargs):
        calls.append("train")
        raise Stop

    monkeypatch.setattr(host_malloc, "keep_freed_memory", lambda: calls.append("malloc") or True)
    monkeypatch.setattr("mlcls.training.entry.train", training)
    CliRunner().invoke(app, ["train"])  # the stub stops it as training starts
    assert calls == ["malloc", "train"]
