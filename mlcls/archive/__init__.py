"""`mlcls predict --engine ray`: a whole archive tagged on Ray Data, on this machine or an existing Ray cluster.

job.py      what one archive job is: the run, the decisions, the output's form, how many workers (ArchiveJob)
inputs.py   INPUT (a file, a folder of shards, a glob) -> input shards, each with the name of its output shard
folder.py   the output folder: its own files' names, the claim on it, a job's settings, per-shard commit records,
            the manifest written last
shard.py    one input shard -> one output shard (read, score, write under a temporary name, rename): the unit of
            work, the same in a Ray worker and in a plain process
writers.py  an output shard's rows as JSON Lines, CSV or Parquet
worker.py   the Ray Data callable class: loads the run once per worker, scores shard after shard
ray_session.py  starting Ray on this machine or joining a cluster, quietly; running the shards on Ray Data
engine.py   the driver: plan, skip the shards already done, run the rest with a progress bar, write the manifest
progress.py the progress bar: shards done, records scored across every worker, records/s

Nothing imports this package but mlcls/cli; ray, torch and pyarrow are imported inside functions.
"""
