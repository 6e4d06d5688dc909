"""provenance.json: where a run came from, so that a number in a report can be traced back to its origin.

What it records: the mlcls version and, when mlcls runs from a git checkout, its commit (and whether the work
tree had uncommitted changes); Python, the platform and the versions of the libraries that shape the
result (torch, transformers, accelerate, tokenizers, ...); the device, precision and processes of the
training (from metrics.json); the command line; the sha256, size and record count of every data file
the config names (data.train, data.validation, data.test, when present); and, for a run started from another
(model.init_from), that parent: its path, the sha256 of each of its weight files and one `weights_sha256` over
them (of their `sha256sum` lines), and which labels the two share.

`write_provenance(run_dir, config)` is called once by the training's finish step, after metrics.json is
written. It never fails a finished training over something it cannot find out: a missing data file, no git,
an unreadable record are written down as such. `provenance_summary` is what the model card and
`mlcls eval --json` show; `data_overlap_notes` is `mlcls eval`'s warning when the evaluated file is the
training or validation file (same sha256).
"""

from __future__ import annotations

import hashlib
import platform
import shlex
import subprocess
import sys
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from mlcls.config import DATA_PATH_KEYS
from mlcls.data.records import FieldSpec, ReadPolicy, read_records
from mlcls.errors import MlclsError, RunDirError
from mlcls.run.files import peek_dict, peek_manifest, peek_metrics, read_labels, write_json
from mlcls.run.layout import PROVENANCE
from mlcls.run.parent import weight_files

FORMAT = 1
# The libraries whose versions can change a result (or whether a run loads at all).
PACKAGES = ("torch", "transformers", "accelerate", "tokenizers", "safetensors", "numpy", "scikit-learn",
            "datasets")
_CHUNK = 1 << 20


def write_provenance(run_dir: Path, config) -> None:
    """Write run_dir/provenance.json for a run trained with `config` (reads run_dir/metrics.json if present)."""
    run_dir = Path(run_dir)
    provenance = collect_provenance(config, peek_metrics(run_dir))
    if config.model.init_from:
        provenance["parent"] = parent_info(Path(config.model.init_from), _labels(run_dir))
    write_json(run_dir / PROVENANCE, provenance)


def collect_provenance(config, metrics: dict[str, Any] | None = None) -> dict[str, Any]:
    metrics = metrics if isinstance(metrics, dict) else {}
    training = {key: metrics[key] for key in ("device", "precision", "processes") if key in metrics}
    if training.get("device") == "cuda":
        training["gpu"] = _gpu_name()
    return {
        "format": FORMAT,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "mlcls": {"version": package_version("mlcls"), **git_state(project_dir())},
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": {name: package_version(name) for name in PACKAGES},
        "training": training,
        "command": {"argv": list(sys.argv), "line": command_line(sys.argv), "cwd": str(Path.cwd())},
        "data": {key: data_file_info(getattr(config.data, key), config) for key in DATA_PATH_KEYS
                 if getattr(config.data, key, None)},
    }


def command_line(argv: list[str]) -> str:
    """The command as typed: the program by its name (`mlcls train ...`), not its path in a virtual environment."""
    if not argv:
        return ""
    program = argv[0]
    if program.endswith("mlcls/__main__.py"):
        program = "python -m mlcls"
    elif Path(program).name == "mlcls":
        program = "mlcls"
    return " ".join([program, *(shlex.quote(arg) for arg in argv[1:])])


def project_dir() -> Path:
    """The folder that holds the mlcls package: the project's checkout in an editable install."""
    return Path(__file__).resolve().parents[2]


def git_state(folder: Path) -> dict[str, Any]:
    """{"git_commit": sha, "git_dirty": bool} when `folder` is the top of a git checkout, else {}. An mlcls
    installed into a virtual environment that happens to sit inside some repository is not that repository's
    code: the top of the checkout must be `folder` itself."""
    try:
        top = _git(folder, "rev-parse", "--show-toplevel")
        if top is None or Path(top).resolve() != folder.resolve():
            return {}
        commit = _git(folder, "rev-parse", "HEAD")
        if commit is None:
            return {}
        status = _git(folder, "status", "--porcelain", "--untracked-files=no")
    except OSError:
        return {}
    state: dict[str, Any] = {"git_commit": commit}
    if status is not None:
        state["git_dirty"] = bool(status)
    return state


def _git(folder: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=10,
                              check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def data_file_info(value: str, config) -> dict[str, Any]:
    """The file's absolute path, size, sha256 and how many records mlcls reads from it (bad lines skipped and
    counted); a file that is not there is recorded as missing."""
    path = Path(value)
    info: dict[str, Any] = {"path": str(path.absolute())}
    try:
        info["bytes"] = path.stat().st_size
        info["sha256"] = sha256_file(path)
    except OSError as exc:
        info["missing"] = True
        info["error"] = f"{type(exc).__name__}: {exc.strerror or exc}"
        return info
    info.update(_count_records(path, config))
    return info


def parent_info(parent: Path, labels: list[str] | None) -> dict[str, Any]:
    """The run a run started from: its path, its weight files' sha256 and one over them all, and how its labels
    compare with `labels` (the run's own). A parent no longer there is recorded as missing, never fatal."""
    info: dict[str, Any] = {"path": str(parent)}
    try:
        files = {str(path.relative_to(parent)): sha256_file(path) for path in weight_files(parent)}
    except OSError as exc:
        files = {}
        info["error"] = f"{type(exc).__name__}: {exc.strerror or exc}"
    if not files:
        info["missing"] = True
        return info
    # One value that names the weights: the sha256 of their `sha256sum` lines (hash, two spaces, file name).
    listing = "".join(f"{digest}  {name}\n" for name, digest in files.items())
    info["weights_sha256"] = hashlib.sha256(listing.encode("utf-8")).hexdigest()
    info["weight_files"] = files
    theirs = _labels(parent)
    if theirs is not None and labels is not None:
        info["labels"] = {"shared": len(set(theirs) & set(labels)), "new": [n for n in labels if n not in theirs],
                          "dropped": [n for n in theirs if n not in labels]}
    return info


def _labels(run: Path) -> list[str] | None:
    try:
        return read_labels(run).labels
    except RunDirError:
        return None


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _count_records(path: Path, config) -> dict[str, Any]:
    policy = ReadPolicy("skip")
    try:
        records = sum(1 for _ in read_records(path, FieldSpec.from_config(config.data), policy=policy))
    except MlclsError as exc:  # e.g. no record at all: a fact about the file, not a reason to fail
        return {"records": 0, "error": str(exc)}
    except Exception as exc:  # an unreadable Parquet, a decoder error: recorded, never fatal to a finished run
        return {"error": f"{type(exc).__name__}: {exc}"}
    stats = policy.stats.get(str(path))
    out: dict[str, Any] = {"records": records}
    if stats is not None and stats.skipped:
        out["skipped_lines"] = dict(stats.skipped)
    return out


def package_version(name: str) -> str | None:
    """An installed package's version, or None."""
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _gpu_name() -> str | None:
    try:
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception:
        return None


# ------------------------------------------------------------------------------------------ reading it back


def read_provenance(run_dir: Path) -> dict[str, Any] | None:
    data = peek_dict(Path(run_dir) / PROVENANCE)
    return data if isinstance(data, dict) else None


def provenance_summary(run_dir: Path) -> dict[str, Any] | None:
    """The short form: versions, commit, device and precision, the command, each data file's sha256 and
    record count (what `mlcls eval --json` and the model card show). None when the run has no provenance.json.
    An ONNX export (export.json beside it) adds what it is: its format, quantisation and source run."""
    data = read_provenance(run_dir)
    export = peek_manifest(Path(run_dir))
    if data is None and not isinstance(export, dict):
        return None
    data = data or {}
    packages = data.get("packages") if isinstance(data.get("packages"), dict) else {}
    mlcls = data.get("mlcls") if isinstance(data.get("mlcls"), dict) else {}
    summary: dict[str, Any] = {
        "created": data.get("created"),
        "mlcls_version": mlcls.get("version"),
        "git_commit": mlcls.get("git_commit"),
        "git_dirty": mlcls.get("git_dirty"),
        "python": data.get("python"),
        **{name: packages.get(name) for name in ("torch", "transformers", "accelerate")},
        **(data.get("training") if isinstance(data.get("training"), dict) else {}),
        "command": (data.get("command") or {}).get("line") if isinstance(data.get("command"), dict) else None,
        "data": {key: {k: v for k, v in info.items() if k in ("path", "sha256", "records", "missing")}
                 for key, info in (data["data"] if isinstance(data.get("data"), dict) else {}).items()
                 if isinstance(info, dict)},
    }
    parent = data.get("parent")
    if isinstance(parent, dict):  # model.init_from: the run this one started from
        summary["parent"] = {k: parent[k] for k in ("path", "weights_sha256", "labels", "missing") if k in parent}
    if isinstance(export, dict):
        summary["export"] = {k: export.get(k) for k in ("format", "quantize", "source_run", "created")}
    return {k: v for k, v in summary.items() if v is not None and v != {}}


def data_overlap_notes(run_dir: Path, evaluated: str | Path, name: str | None = None) -> list[str]:
    """`mlcls eval`'s warning when the file it scores is the run's training or validation file (same sha256):
    figures on the data a model learned from, or its thresholds were tuned on, are not a test."""
    data = read_provenance(run_dir)
    if data is None or not isinstance(data.get("data"), dict):
        return []
    hashes = {key: info.get("sha256") for key, info in data["data"].items()
              if key in ("train", "validation") and isinstance(info, dict) and info.get("sha256")}
    path = Path(evaluated)
    if not hashes or not path.is_file():
        return []
    try:
        digest = sha256_file(path)
    except OSError:
        return []
    same = [key for key, value in hashes.items() if value == digest]
    if not same:
        return []
    run = name or Path(run_dir).name
    if "train" in same:
        roles = "training" + (" and validation" if "validation" in same else "")
        return [f"{evaluated} is the {roles} file of {run} (same sha256): these figures measure how well it fits "
                "the data it learned from, not how it does on new articles"]
    return [f"{evaluated} is the validation file of {run} (same sha256), on which its decision rule was tuned: "
            "these figures are optimistic"]
