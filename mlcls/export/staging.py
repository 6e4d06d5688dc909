"""What both export formats share: the target folder, built under a hidden name and renamed whole (nothing
half-written at --out), the random batches of the parity check, the manifest and the model card."""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlcls.atomic import check_name_room, describe_os_error, open_permissions
from mlcls.errors import MlclsError
from mlcls.run.files import write_manifest
from mlcls.run.layout import EXPORTED_FILES
from mlcls.run.model_card import write_model_card

FP32_TOLERANCE = 1e-4


@dataclass
class ExportResult:
    path: Path
    source: Path
    manifest: dict[str, Any]

    @property
    def max_abs_diff(self) -> float:
        return float(self.manifest["check"]["max_abs_diff"])




def check_target(out: Path) -> None:
    check_name_room(out, len(".export-4194304.tmp") + 1, "--out")  # the staging folder's name (_staging_folder)
    if out.is_symlink():  # the export is renamed onto --out at the end: a link would be replaced, or fail then
        raise MlclsError(f"{out}: a symbolic link; give the folder itself (or a new name) as --out")
    if out.exists():
        if not out.is_dir():
            raise MlclsError(f"{out}: exists and is not a folder; choose another --out")
        try:
            empty = not any(out.iterdir())
        except OSError as exc:
            raise MlclsError(f"{out}: cannot read ({describe_os_error(exc)})") from None
        if not empty:
            raise MlclsError(f"{out}: exists and is not empty; choose another --out, or delete it")




def worst_difference(worst: float, got, expected) -> float:
    """The larger of `worst` and the largest |got - expected| of one parity batch. A score that is not a finite
    number, on either side, refuses the export: max() passes over NaN (nan > x is False), so the check would
    have called a graph of NaN scores exact."""
    diff = np.abs(np.asarray(got, dtype=np.float64) - np.asarray(expected, dtype=np.float64))
    if not np.isfinite(diff).all():
        raise MlclsError("the export's scores and mlcls's are not all finite numbers on the parity check (NaN or "
                         "infinity); nothing was written")
    return max(worst, float(diff.max()))


def random_batches(vocab_size: int, max_length: int):
    """(token ids, attention mask) batches of 1, 3 and 5 rows of several lengths, rows padded within a batch."""
    import torch

    rng = np.random.default_rng(0)
    longest = max(2, min(max_length, 64))
    for batch, width in ((1, 2), (3, min(7, longest)), (5, longest)):
        ids = torch.from_numpy(rng.integers(0, max(vocab_size, 1), size=(batch, width)))
        mask = torch.ones((batch, width), dtype=torch.long)
        for row in range(1, batch):
            mask[row, max(1, width - row * width // batch):] = 0
        yield ids, mask


@contextlib.contextmanager
def staged(out: Path):
    """A hidden folder beside `out` to build the export in, renamed onto `out` when the block ends; on any error
    (Ctrl-C too) it is removed, so nothing half-written is left at `out`."""
    staging = _staging_folder(out)
    try:
        yield staging
        open_permissions(staging)  # files copied from a run saved 0600 (before mlcls fixed its modes) included
        if out.is_dir():
            out.rmdir()  # empty (checked before): the rename takes its place
        staging.rename(out)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise MlclsError(f"{out}: cannot write the export ({describe_os_error(exc)}); nothing was written") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def copy_run_files(source: Path, staging: Path) -> None:
    """The run's small files that an export carries (config, labels, rule, statistics, metrics, provenance)."""
    for name in EXPORTED_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, staging / name)


def write_manifest_and_card(source: Path, staging: Path, manifest: dict[str, Any]) -> None:
    write_manifest(staging, manifest)
    write_model_card(source, staging, export=manifest)


def _staging_folder(out: Path) -> Path:
    """A hidden folder beside `out`, renamed onto it when the export is whole (nothing half-written at `out`)."""
    staging = out.parent / f".{out.name}.export-{os.getpid()}.tmp"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir()
    except OSError as exc:
        raise MlclsError(f"{out}: cannot create the export folder ({describe_os_error(exc)})") from None
    return staging
