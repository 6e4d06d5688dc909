"""Where training runs: the Accelerator (device, mixed precision) and the data-parallel helpers.

One loop serves one CPU, one GPU and data-parallel training under `accelerate launch` / `torchrun`: every
process reads the same data and draws the same batch order, takes its share of the batches, and
validates on the whole validation set (so every process reaches the same decisions: thresholds, best
epoch, early stop); only the main process writes files. Every data-parallel touch point is here, and the
experiment trackers (train.report_to), which Accelerate runs too.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlcls.errors import MlclsError
from mlcls.precision import choose_precision


def make_accelerator(device: str, precision: str):
    """An Accelerator for `device` and `precision` (auto resolved by the hardware, see choose_precision).

    Accelerate keeps its state per process and refuses a second Accelerator with another precision
    ("AcceleratorState has already been initialized and cannot be changed"): a second training in the
    same Python process (tests, notebooks, scripts) with another precision would fail. Outside a
    distributed launch nothing else holds on to that state, so it is reset here, as accelerate's own
    AccelerateTestCase does between tests."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, GradientState

    on_cuda, precision = choose_precision(device, precision)
    mixed = "no" if precision == "fp32" else precision
    if AcceleratorState._shared_state and launched_processes() == 1:
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()
    return Accelerator(cpu=not on_cuda, mixed_precision=mixed)


def precision_name(accelerator) -> str:
    return "fp32" if accelerator.mixed_precision == "no" else str(accelerator.mixed_precision)


def launched_processes() -> int:
    """Processes started by torchrun / accelerate launch (they set WORLD_SIZE), before any Accelerator."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_launch_main_process() -> bool:
    """True in the process that writes files: rank 0 of a launch, or the only process."""
    return int(os.environ.get("RANK", "0")) == 0


def process_share(batches: list[np.ndarray], world: int, rank: int) -> list[np.ndarray]:
    """This process's batches: every world-th one. The list is first padded with its own first batches
    to a multiple of the process count (as torch's DistributedSampler pads), so that every process
    takes the same number of steps: data-parallel processes wait for each other at every step."""
    if world == 1:
        return batches
    short = -len(batches) % world
    return [*batches, *batches[:short]][rank::world]


def any_process(accelerator, flag: bool) -> bool:
    """True on every process when it is true on one: all must stop at the same step, or they deadlock."""
    if accelerator.num_processes == 1:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=accelerator.device)
    return bool(accelerator.reduce(value, reduction="sum").item() > 0)


def broadcast(accelerator, value: str) -> str:
    """The main process's value on every process (a timestamped run name may differ between them)."""
    if accelerator.num_processes == 1:
        return value
    from accelerate.utils import broadcast_object_list

    return broadcast_object_list([value])[0]


# -------------------------------------------------------------------- experiment trackers (train.report_to)


def check_trackers(names: list[str]) -> None:
    """Each tracker of train.report_to installed, or one line naming the package, before anything is read or
    trained (Accelerate would drop a missing tracker with a debug message, or fail later with a traceback).
    The names were checked by the config (config.TRACKERS); each is also its package's name."""
    if not names:
        return
    import importlib.util

    from accelerate.tracking import get_available_trackers

    available = {str(t) for t in get_available_trackers()}
    for name in names:
        # find_spec too: Accelerate counts tensorboardX as tensorboard, but its writer needs tensorboard itself.
        if name not in available or importlib.util.find_spec(name) is None:
            extra = ' (or pip install "mlcls[tensorboard]")' if name == "tensorboard" else ""
            raise MlclsError(f"train.report_to names {name}, which is not installed: pip install {name}{extra}")


def start_tracking(accelerator, names: list[str], folder: Path, run_name: str, hparams: dict[str, Any]) -> None:
    """Start the trackers, logging under `folder` (the run's tracking/), with the config as hyperparameters.

    What Accelerator(log_with=names, project_dir=folder) does when it is built, done once the run's folder
    exists: the Accelerator comes first, because the run's name is agreed on between processes through it."""
    from accelerate.tracking import filter_trackers
    from accelerate.utils import ProjectConfiguration

    accelerator.project_configuration = ProjectConfiguration(project_dir=str(folder))
    accelerator.log_with = filter_trackers(names, accelerator.logging_dir)
    # The project "mlcls" (TensorBoard: the tracking/mlcls/ subfolder); the run's name where a tracker has one.
    accelerator.init_trackers("mlcls", config=hparams,
                              init_kwargs={"wandb": {"name": run_name}, "mlflow": {"run_name": run_name}})


def end_tracking(accelerator) -> None:
    """Close the trackers (files flushed, remote runs marked finished); again is a no-op.
    Accelerator.end_training() closes them too, but also destroys the torch.distributed process group, which
    the run still needs afterwards (a barrier before the rename into place)."""
    for tracker in accelerator.trackers:
        tracker.finish()
    accelerator.trackers.clear()


def flat_hparams(tree: dict[str, Any], prefix: str = "") -> dict[str, bool | int | float | str]:
    """The config as {"train.lr": 1e-4, ...}: TensorBoard's hparams take scalars only, so lists and null are
    written as JSON text ("[\"title\", \"text\"]", "null")."""
    flat: dict[str, bool | int | float | str] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flat_hparams(value, f"{name}."))
        elif isinstance(value, (bool, int, float, str)):
            flat[name] = value
        else:
            flat[name] = json.dumps(value)
    return flat
