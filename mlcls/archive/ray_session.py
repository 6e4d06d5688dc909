"""Ray for an archive job: started on this machine or joined on a cluster, quietly, and the shards run on Ray Data.

Why one shard is one unit of work (and not records streamed through `read_json(...).map_batches(...)`): the
records must be read by mlcls's own readers, so that ids, line numbers, fields and the bad-input policy are
those of `mlcls predict` (Ray's readers know none of them, and stop a whole read at a bad line); and a shard
that is read, scored and written by one worker, under a temporary name renamed when whole, is what makes a job
resumable exactly once per shard without a second bookkeeping of records. Ray Data still does what it is good
at: a pool of actors that each load the run once (`map_batches` with a callable class, a fixed
`ActorPoolStrategy`, `num_cpus` / `num_gpus` per worker), scheduling across the cluster, restarts of a worker
that dies (two at most: WORKER_RESTARTS), and streaming the finished shards back. A shard goes to a worker only
once the worker is free (`max_tasks_in_flight_per_actor=1`), so shards of uneven sizes balance.

The input, the output folder and the run are read by the workers where the driver names them: on a cluster
they must be on a file system that every node mounts at the same path (NFS, a shared volume of the KubeRay
pods), with mlcls installed on every node.
"""

from __future__ import annotations

import logging
import os
import re
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any

from mlcls.archive.inputs import ShardTask
from mlcls.archive.job import ArchiveJob
from mlcls.atomic import describe_os_error
from mlcls.errors import MlclsError

ANSI = re.compile(r"\x1b\[[0-9;]*m")  # the colours of Ray's messages
RAY_MISSING = '--engine ray needs Ray: pip install "mlcls[ray]"'
# A worker that dies (out of memory, a node lost) is restarted, and its shard retried, at most twice: Ray Data's
# own default is without end (max_restarts=-1, max_task_retries=-1), so a shard that kills every worker it goes
# to would never stop the job; after two, the job stops with "a Ray worker failed" (engine.py)
WORKER_RESTARTS = {"max_restarts": 2, "max_task_retries": 2}


def import_ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401 (the extra is ray[data]: a bare ray lacks it)
    except ImportError:
        raise MlclsError(RAY_MISSING) from None
    return ray


@contextmanager
def ray_session(job: ArchiveJob) -> Iterator[Any]:
    """Ray, ready: the Ray this process already runs (a notebook, a test) as it is; else the cluster at
    job.address; else a Ray started here with the CPUs the workers need, no dashboard, quiet, stopped at the end.
    One worker must fit in what that Ray has: else it is refused here, in one line, before anything runs."""
    ray = import_ray()
    started = False
    if not ray.is_initialized():
        _start_or_join(ray, job)
        started = True
    try:
        check_one_worker_fits(job, ray.cluster_resources(), _where(job, started))
        _quiet_ray_data(ray)
        yield ray
    finally:
        if started:
            ray.shutdown()


def _start_or_join(ray: Any, job: ArchiveJob) -> None:
    quiet = {"logging_level": logging.ERROR, "log_to_driver": False}
    # before ray.init: a worker too big for this machine is the user's one line, not "cannot start Ray"
    num_cpus = None if job.address else local_num_cpus(job, os.cpu_count() or 1)
    try:
        if job.address:
            ray.init(address=job.address, **quiet)
        else:
            ray.init(num_cpus=num_cpus, include_dashboard=False, **quiet)
    except Exception as exc:  # ConnectionError, a port taken, no shared memory, ...: say which, in one line
        where = f"join the Ray cluster at {job.address}" if job.address else "start Ray on this machine"
        raise MlclsError(f"cannot {where}: {error_line(exc)}") from exc


def _where(job: ArchiveJob, started: bool) -> str:
    if not started:
        return "the Ray this process runs"
    return f"the Ray cluster at {job.address}" if job.address else "this machine"


def local_num_cpus(job: ArchiveJob, cpu_count: int) -> int:
    """The CPUs of a Ray started here: the machine's, or more when --workers ask for more (they share the cores,
    as asked). A worker that asks for more threads than the machine has is refused: Ray would wait for a CPU
    count that never comes, forever."""
    _cpus_fit(job, cpu_count, "this machine")  # its GPUs: as Ray sees them, once it runs (ray_session)
    return max((job.workers or 0) * job.threads_per_worker, cpu_count)


def check_one_worker_fits(job: ArchiveJob, resources: dict[str, float], where: str) -> None:
    """Refuse, in one line, a worker that asks for more CPUs or GPUs than `resources` (Ray's totals) hold. Ray
    Data would wait for it without end: it waits for its actors with no time limit, and this job turns off
    its no-progress timeout (a long shard is not a stuck one)."""
    _cpus_fit(job, resources.get("CPU", 0), where)
    _gpus_fit(job, resources.get("GPU", 0), where)


def _cpus_fit(job: ArchiveJob, cpus: float, where: str) -> None:
    if job.threads_per_worker > cpus:
        fix = f"give --threads-per-worker {int(cpus)} or fewer" if cpus >= 1 else "add nodes with CPUs"
        raise MlclsError(f"--threads-per-worker {job.threads_per_worker}: {where} has {cpus:g} CPUs, fewer than "
                         f"one worker asks for; {fix}")


def _gpus_fit(job: ArchiveJob, gpus: float, where: str) -> None:
    if job.gpus_per_worker > gpus:
        fix = f"give --gpus-per-worker {gpus:g} or less" if gpus > 0 else "leave --gpus-per-worker out (the CPU)"
        raise MlclsError(f"--gpus-per-worker {job.gpus_per_worker:g}: {where} has {gpus:g} GPUs (as Ray sees "
                         f"them), fewer than one worker asks for; {fix}")


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """A cluster's HOST:PORT (or ray://HOST:PORT) must answer: ray.init waits minutes for one that does not."""
    import socket

    host_port = address.split("://", 1)[-1]
    if address == "auto" or ":" not in host_port:
        return  # "auto" finds the cluster this machine runs, or says at once that there is none
    host, _, port = host_port.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except (OSError, ValueError) as exc:
        cause = "not a port number" if isinstance(exc, ValueError) else describe_os_error(exc)
        raise MlclsError(f"cannot join the Ray cluster at {address}: nothing answers there ({cause}); is its head "
                         "started (`ray start --head`)?") from None


def _quiet_ray_data(ray: Any) -> None:
    """Ray Data's own bars and logs off (ours says what is going on); no time limit on a long shard."""
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    context.enable_auto_log_stats = False
    # Ray Data stops an execution that produced nothing for 30 minutes; one big shard on one CPU can take longer
    context.execution_no_progress_timeout_s = -1
    logging.getLogger("ray.data").setLevel(logging.ERROR)


def worker_count(ray: Any, job: ArchiveJob, shards: int) -> tuple[int, str | None]:
    """(workers, a note when the cluster has fewer resources than they ask for now): --workers, else as many as
    the cluster's CPUs (GPUs with --gpus-per-worker) hold; never more than there are shards to do."""
    resources = ray.cluster_resources()
    cpus, gpus = resources.get("CPU", 0), resources.get("GPU", 0)
    if job.workers:
        workers = job.workers
    elif job.gpus_per_worker > 0:
        workers = int(gpus // job.gpus_per_worker)
    else:
        workers = int(cpus // job.threads_per_worker)
    workers = max(1, min(workers, shards))
    note = None
    if workers * job.threads_per_worker > cpus or workers * job.gpus_per_worker > gpus:
        note = (f"{workers} workers ask for {workers * job.threads_per_worker:g} CPUs and "
                f"{workers * job.gpus_per_worker:g} GPUs; the Ray cluster has {cpus:g} and {gpus:g} now: they wait "
                "for the rest (an autoscaler adds nodes; otherwise give fewer --workers)")
    return workers, note


def run_shards(ray: Any, job: ArchiveJob, tasks: list[ShardTask], workers: int, counter: Any) -> Iterator[str]:
    """The shards run on Ray Data; each one's commit record (or error), as JSON, as soon as it is done."""
    from mlcls.archive.worker import ShardPredictor

    dataset = ray.data.from_items([asdict(task) for task in tasks], override_num_blocks=len(tasks))
    with warnings.catch_warnings():
        # Ray 2.60 calls the actor options passed this way deprecated, yet names no other way to pass these two
        warnings.filterwarnings("ignore", message=".*ray_remote_args.* is deprecated")
        dataset = dataset.map_batches(
            ShardPredictor, batch_size=1, udf_modifying_row_count=False,
            fn_constructor_kwargs={"settings": {**job.worker_settings(), "device": job.device}, "counter": counter},
            compute=ray.data.ActorPoolStrategy(size=workers, max_tasks_in_flight_per_actor=1),
            num_cpus=job.threads_per_worker, num_gpus=job.gpus_per_worker or None, **WORKER_RESTARTS,
        )
    # each shard's status as soon as its worker returns it: iter_rows() prefetches, holding a status back until
    # the next shard is done too (a bad shard under --on-error fail stopped the job a whole shard late)
    batches = iter(dataset.iter_batches(batch_size=None, prefetch_batches=0))
    try:
        for batch in batches:
            yield from batch["status"]
    finally:
        close = getattr(batches, "close", None)
        if close is not None:  # a generator: closing it shuts Ray Data's execution down
            close()


def stop_workers(ray: Any, counter: Any, wait_s: float = 60.0) -> None:
    """Kill this job's workers and wait until they are gone. Ray Data, shut down, only drops its references to
    its actors: a worker in the middle of a shard goes on to the end of it, and under a Ray that outlives the job
    (a notebook's, a cluster's) it would commit the shard after the job has said how many are written, and beside
    a rerun of the same command once the output folder's lock is released. A worker that does not go within
    `wait_s` (a node that does not answer) is left to Ray."""
    try:
        workers = ray.get(counter.workers.remote(), timeout=10)
    except Exception:  # the counter itself gone (its node lost): no handle to kill by
        return
    for worker in workers:
        ray.kill(worker, no_restart=True)
    deadline = time.monotonic() + wait_s
    for worker in workers:
        while time.monotonic() < deadline:
            try:  # queued behind the task it runs while alive; answered with an error once it is dead
                ray.get(worker.__ray_ready__.remote(), timeout=1)
            except ray.exceptions.GetTimeoutError:
                continue
            except ray.exceptions.RayActorError:
                break
            time.sleep(0.05)  # answered: the kill has not reached it yet


def record_counter(ray: Any) -> Any:
    from mlcls.archive.worker import RecordCounter

    return ray.remote(num_cpus=0)(RecordCounter).remote()


def error_line(exc: BaseException) -> str:
    """The line of a (Ray) error that says what went wrong. A worker's exception comes as its remote traceback
    followed by Ray's wrappers: the line after the traceback (`ValueError: ...`) is the one; an error without a
    traceback (a worker that died, a cluster not found) says it in its first line."""
    lines = [ANSI.sub("", line).rstrip() for line in str(exc).splitlines()]
    for before, line in zip(lines, lines[1:], strict=False):
        if before.startswith(" ") and line and not line.startswith(" "):
            return line
    shown = [line.strip() for line in lines if line.strip()]
    return shown[0] if shown else type(exc).__name__
