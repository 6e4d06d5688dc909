"""`mlcls serve` under load, on loopback: throughput, latency, errors and memory, against `mlcls predict` on a file.

Starts `mlcls serve RUN --host 127.0.0.1 --port 0` as a subprocess, then runs each case in turn, each a fixed
number of requests (bounded by --case-seconds too):
  - 1, 4 and 16 concurrent clients, each sending single-article requests one after another (keep-alive
    connections, http.client);
  - 4 concurrent clients sending 32-article requests.
Per case: articles/s and its share of `mlcls predict`'s, request latency p50 / p95 / p99, errors (any answer but
200, or a broken connection), the mean number of articles per scoring call and the share of the case's time the
model was busy (the server's /ready counters: what dynamic batching achieved), and the CPU that the clients and
the server used, as a share of all the machine's cores over the case: the clients are threads of this process on
the same cores, so that column says how much of the machine they took from the server. The server's RSS is read
at the start (after a warm-up) and at the end. `mlcls predict` scores a file of --predict-lines of the same
articles before the server starts and after it stops (--predict-runs 2; the shares are of the two runs' mean: on
a shared machine one run drifts by a fifth); its throughput (and CPU time) is taken net of start-up (a
one-article run subtracted). The summary line holds the issue's goals: 4 clients x 32 articles against predict,
16 single-article clients against predict, and the p50 latency of 1 client sending 1 article.
Articles are the JSONL records of --data (labels dropped), cycled.

    python scripts/bench_serve.py --run runs/NAME --data data/reuters/test.jsonl
    python scripts/bench_serve.py --run runs/NAME --data data/reuters/test.jsonl --requests 2000 --predict-lines 4000
    # a load test: 64 clients for 60 s, nothing else (its own block in docs/benchmarks.md)
    python scripts/bench_serve.py --run runs/NAME --data FILE --clients 64 --requests 100000000 --case-seconds 60 \
        --big-requests 0 --predict-lines 0 --block bench_serve_load

Only 127.0.0.1 is contacted; every loop is bounded in count and in time; the server is stopped with SIGTERM
(and killed if it has not exited 60 s later).
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import math
import os
import re
import resource
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchlib import machine, mlcls_command, write_block  # scripts/ is on sys.path when a script runs

HEADING = "## Serving (`scripts/bench_serve.py`)"


def read_articles(path: Path, limit: int = 5000) -> list[dict]:
    """The records of a JSONL file, without their labels: what a client would send."""
    articles = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                row = json.loads(line)
                row.pop("labels", None)
                articles.append(row)
            if len(articles) >= limit:
                break
    if not articles:
        raise SystemExit(f"{path}: no records")
    return articles


def percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, max(0, math.ceil(p * len(sorted_values)) - 1))]


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (all its threads)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Server:
    """`mlcls serve` in a subprocess on 127.0.0.1 and a free port."""

    def __init__(self, run: Path, extra: list[str]):
        command = mlcls_command("serve", str(run), "--host", "127.0.0.1", "--port", "0", *extra)
        self.process = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        self.port = None
        started = time.monotonic()
        while self.port is None and time.monotonic() - started < 300:
            line = self.process.stderr.readline()
            if not line:
                break
            print(line.rstrip(), flush=True)
            found = re.search(r"on http://127\.0\.0\.1:(\d+) ", line)
            self.port = int(found.group(1)) if found else None
        if self.port is None:
            self.stop()
            raise SystemExit(f"the server did not start (exit code {self.process.returncode})")
        # the rest of its stderr is drained in the background, so that a full pipe never blocks the server
        self.tail: list[str] = []
        threading.Thread(target=lambda: self.tail.extend(self.process.stderr), daemon=True).start()

    def get(self, path: str) -> dict:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            connection.request("GET", path)
            return json.loads(connection.getresponse().read())
        finally:
            connection.close()

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        return self.process.returncode


def run_case(port: int, articles: list[dict], clients: int, per_request: int, requests: int,
             seconds: float) -> dict:
    """`requests` requests of `per_request` articles, sent by `clients` threads; stops early after `seconds`."""
    counter = itertools.count()
    lock = threading.Lock()
    latencies: list[float] = []
    errors: list[str] = []
    deadline = time.monotonic() + seconds
    bodies = [json.dumps({"records": [articles[(i * per_request + j) % len(articles)] for j in range(per_request)]})
              .encode() for i in range(min(requests, 256))]

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        while time.monotonic() < deadline:
            with lock:
                number = next(counter)
            if number >= requests:
                break
            started = time.perf_counter()
            try:
                connection.request("POST", "/v1/predict", body=bodies[number % len(bodies)],
                                   headers={"Content-Type": "application/json"})
                response = connection.getresponse()
                payload = response.read()
                if response.status != 200 or len(json.loads(payload)["predictions"]) != per_request:
                    errors.append(f"{response.status}: {payload[:200]!r}")
                    continue
            except (OSError, http.client.HTTPException, ValueError) as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                continue
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
        connection.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started, cpu = time.perf_counter(), time.process_time()  # this process's CPU: the clients' (the rest waits)
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    latencies.sort()
    return {"clients": clients, "per_request": per_request, "requests": len(latencies) + len(errors),
            "ok": len(latencies), "errors": len(errors), "first_error": errors[0] if errors else None,
            "wall": wall, "articles_per_s": len(latencies) * per_request / wall, "client_cpu": cpu,
            "p50": 1000 * percentile(latencies, 0.50), "p95": 1000 * percentile(latencies, 0.95),
            "p99": 1000 * percentile(latencies, 0.99)}


def predict_throughput(run: Path, articles: list[dict], lines: int, extra: list[str]) -> dict:
    """`mlcls predict` on a file of `lines` articles, and on one article (its start-up): net articles/s."""
    with tempfile.TemporaryDirectory() as folder:
        walls, cpus = {}, {}
        for n in (1, lines):
            source = Path(folder) / f"in-{n}.jsonl"
            with open(source, "w", encoding="utf-8") as out:
                for i in range(n):
                    out.write(json.dumps({**articles[i % len(articles)], "id": str(i)}, ensure_ascii=False) + "\n")
            started, cpu = time.perf_counter(), children_cpu()
            subprocess.run(mlcls_command("predict", str(source), "--model", str(run), "-o",
                                         str(Path(folder) / "out.jsonl"), *extra), check=True,
                           stdout=subprocess.DEVNULL)
            walls[n], cpus[n] = time.perf_counter() - started, children_cpu() - cpu
    net = max(walls[lines] - walls[1], 1e-9)
    return {"lines": lines, "wall": walls[lines], "startup": walls[1], "articles_per_s": (lines - 1) / net,
            "cpu_ms_per_article": 1000 * (cpus[lines] - cpus[1]) / (lines - 1)}


def predict_run(args: argparse.Namespace, articles: list[dict], extra: list[str]) -> dict:
    predict = predict_throughput(args.run, articles, args.predict_lines, extra)
    print(f"mlcls predict: {predict['lines']} lines in {predict['wall']:.1f} s (start-up "
          f"{predict['startup']:.1f} s): {predict['articles_per_s']:.1f} articles/s net, "
          f"{predict['cpu_ms_per_article']:.1f} ms of CPU per article", flush=True)
    return predict


def mean_predict(runs: list[dict]) -> dict | None:
    """The predict runs as one yardstick: their mean times (the rate net of start-up from them), and each run's
    articles/s (`each`)."""
    if not runs:
        return None
    mean = {key: statistics.fmean(run[key] for run in runs) for key in ("wall", "startup", "cpu_ms_per_article")}
    lines = runs[0]["lines"]
    return {"lines": lines, **mean, "articles_per_s": (lines - 1) / max(mean["wall"] - mean["startup"], 1e-9),
            "each": [run["articles_per_s"] for run in runs]}


def children_cpu() -> float:
    """User + system CPU time of the finished child processes so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure_case(server: Server, articles: list[dict], clients: int, per_request: int, requests: int,
                 seconds: float) -> dict:
    """One case, with the server's counters and CPU read around it."""
    before, server_cpu = server.get("/ready")["scored"], cpu_seconds(server.process.pid)
    case = run_case(server.port, articles, clients, per_request, requests, seconds)
    after, server_cpu = server.get("/ready")["scored"], cpu_seconds(server.process.pid) - server_cpu
    calls = after["batches"] - before["batches"]
    case["mean_batch"] = (after["records"] - before["records"]) / calls if calls else float("nan")
    busy = after.get("busy_seconds", math.nan) - before.get("busy_seconds", math.nan)  # (an older server: none)
    capacity = case["wall"] * (os.cpu_count() or 1)  # every core, over the case
    case.update(busy=busy / case["wall"], client_share=case["client_cpu"] / capacity,
                server_share=server_cpu / capacity, rss=rss_mib(server.process.pid))
    print(f"{clients} clients x {per_request} articles/request: {case['articles_per_s']:.1f} articles/s, "
          f"p50 {case['p50']:.1f} ms, p95 {case['p95']:.1f} ms, p99 {case['p99']:.1f} ms, "
          f"{case['errors']} errors, {case['mean_batch']:.1f} articles per scoring call, model busy "
          f"{percent(case['busy'])}, CPU: clients {100 * case['client_share']:.0f}% / server "
          f"{100 * case['server_share']:.0f}% of the cores, RSS {case['rss']:.0f} MiB", flush=True)
    if case["first_error"]:
        print(f"  first error: {case['first_error']}", flush=True)
    return case


def serve_cases(args: argparse.Namespace, articles: list[dict], extra: list[str]) -> tuple[list[dict], dict]:
    """Start the server, warm it up, run every case, stop it: (cases, the server's facts)."""
    server = Server(args.run, ["--max-batch", str(args.max_batch), "--max-wait-ms", str(args.max_wait_ms), *extra])
    cases = []
    try:
        facts = {"rss_boot": rss_mib(server.process.pid)}  # ready: the model loaded and one full batch scored
        # warm-up: a few requests of each shape the cases send (the largest bodies included), so that RSS at the
        # start holds the working set, and what follows shows whether it grows under load
        run_case(server.port, articles, 2, 1, 8, 60)
        run_case(server.port, articles, 16, 1, 32, 60)  # 16 clients: calls of about 16 articles
        run_case(server.port, articles, 4, 32, 8, 60)  # 4 clients, as the 32-article case: calls of 64
        facts["model"], facts["rss_start"] = server.get("/v1/model"), rss_mib(server.process.pid)
        plan = [(clients, 1, args.requests) for clients in args.clients]
        plan += [(4, 32, args.big_requests)] if args.big_requests > 0 else []
        for clients, per_request, requests in plan:
            cases.append(measure_case(server, articles, clients, per_request, requests, args.case_seconds))
        facts["rss_end"] = rss_mib(server.process.pid)
    finally:
        facts["code"] = server.stop()
    print(f"server exit code after SIGTERM: {facts['code']}", flush=True)
    return cases, facts


def percent(fraction: float) -> str:
    return "-" if math.isnan(fraction) else f"{100 * fraction:.0f}%"


def share(case: dict | None, predict: dict | None) -> str:
    return f"{100 * case['articles_per_s'] / predict['articles_per_s']:.0f}%" if case and predict else "-"


def report(args: argparse.Namespace, command: str, cases: list[dict], facts: dict, predict: dict | None) -> str:
    """The block for docs/benchmarks.md: the machine and command, one row per case, predict and the goals."""
    model = facts["model"]
    lines = [f"Machine: {machine()}; the server on {model.get('device', '?')}, the clients on the same machine "
             f"(loopback). Run: `{args.run}` ({model.get('labels', '?')} labels, encoder "
             f"`{model.get('encoder', '?')}`, max length {model.get('max_length', '?')}). Server: --max-batch "
             f"{args.max_batch} --max-wait-ms {args.max_wait_ms:g}{' --int8' if args.int8 else ''}. "
             f"Command: `{command}`.", "",
             "| clients | articles/request | requests | articles/s | share of predict | p50 ms | p95 ms | p99 ms "
             "| errors | articles per scoring call | model busy | CPU: clients / server, share of the cores "
             "| server RSS MiB after |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for case in cases:
        lines.append(f"| {case['clients']} | {case['per_request']} | {case['requests']} | {case['articles_per_s']:.1f}"
                     f" | {share(case, predict)} | {case['p50']:.1f} | {case['p95']:.1f} | {case['p99']:.1f} "
                     f"| {case['errors']} | {case['mean_batch']:.1f} | {percent(case['busy'])} "
                     f"| {100 * case['client_share']:.0f}% / {100 * case['server_share']:.0f}% | {case['rss']:.0f} |")
    find = {(c["clients"], c["per_request"]): c for c in cases}.get
    goals = []  # issue 31's, for the cases this run has
    for key, wording, goal in (((4, 32), "4 clients x 32 articles", 90), ((16, 1), "16 single-article clients", 80)):
        if find(key) and predict:
            goals.append(f"{wording}: {share(find(key), predict)} of predict (goal: at least {goal}%)")
    if (one := find((1, 1))) is not None:
        goals.append(f"1 client, 1 article: p50 {one['p50']:.1f} ms (goal: at most 30 ms)")
    runs = (f" (the mean of {' and '.join(f'{rate:.1f}' for rate in predict['each'])}: one run before the "
            f"server's cases, one after; the shares are of the mean)" if predict and len(predict["each"]) > 1 else "")
    compared = (f"`mlcls predict` on a file of {predict['lines']} of the same articles: "
                f"{predict['articles_per_s']:.1f} articles/s net of start-up{runs} ({predict['wall']:.1f} s wall, "
                f"{predict['startup']:.1f} s of it start-up; {predict['cpu_ms_per_article']:.1f} ms of CPU per "
                f"article). " if predict else "")
    compared += f"Goals: {'; '.join(goals)}. " if goals else ""
    growth = 100 * (facts["rss_end"] - facts["rss_start"]) / facts["rss_start"]
    lines += ["", f"{compared}Server RSS: {facts['rss_boot']:.0f} MiB when ready, {facts['rss_start']:.0f} MiB "
              f"after warm-up (a few requests of each shape), {facts['rss_end']:.0f} MiB at the end ({growth:+.1f}% "
              f"over the load); exit code after SIGTERM: {facts['code']}."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=Path("data/reuters/test.jsonl"), help="JSONL articles")
    parser.add_argument("--requests", type=int, default=400, help="requests per single-article case")
    parser.add_argument("--big-requests", type=int, default=40, help="requests of the 32-article case (0: none)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--case-seconds", type=float, default=120.0, help="each case stops after this long")
    parser.add_argument("--predict-lines", type=int, default=2000, help="0: no `mlcls predict` run")
    parser.add_argument("--predict-runs", type=int, choices=(1, 2), default=2,
                        help="2: predict before the server's cases and after, the shares taken of the mean")
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--max-wait-ms", type=float, default=10.0)
    parser.add_argument("--int8", action="store_true")
    parser.add_argument("--doc", type=Path, default=Path("docs/benchmarks.md"))
    parser.add_argument("--no-doc", action="store_true", help="print the table only")
    parser.add_argument("--block", default="bench_serve", help="the block of --doc to write (a load test: its own)")
    args = parser.parse_args(argv)
    if args.predict_lines == 1:
        parser.error("--predict-lines: 0 (no predict run) or at least 2 (one article is the start-up run)")

    articles = read_articles(args.data)
    int8 = ["--int8"] if args.int8 else []
    runs = []  # predict before the server's cases and after them: on a shared machine one run is no yardstick
    if args.predict_lines > 0 and args.predict_runs > 1:
        runs.append(predict_run(args, articles, int8))
    cases, facts = serve_cases(args, articles, int8)
    if args.predict_lines > 0:
        runs.append(predict_run(args, articles, int8))
    predict = mean_predict(runs)
    command = "python scripts/bench_serve.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    table = report(args, command, cases, facts, predict)
    print(table)
    if not args.no_doc:
        import torch  # the GPU, when there is one, keeps its own block beside the CPU one

        suffix = ":cuda" if torch.cuda.is_available() else ""
        write_block(args.doc, f"{args.block}{suffix}", table, HEADING)
        print(f"written to {args.doc}")
    if any(case["errors"] for case in cases) or facts["code"] != 0:
        raise SystemExit(1)


if __name__ == "__main__":
    sys.exit(main())
