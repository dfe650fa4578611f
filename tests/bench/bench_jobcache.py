"""Compare master job cache writes per second: the nats returner against local_cache.

Run from the repository root::

    .venv/bin/python -m tests.bench.bench_jobcache

The script starts two nats-servers with JetStream (file storage) on free 127.0.0.1
ports in a temporary folder. The first keeps JetStream's default ``sync_interval``,
which the NATS documentation gives as 2 minutes: written data reaches the disk
within that time, not at each write. The second sets ``sync_interval: always`` and
syncs every write, as Salt's ``local_cache`` does with an fsync per file. That makes
three variants: ``local_cache``, ``nats`` and ``nats, sync always``. For each, the
script loads Salt's returners in this process, with a master config whose cachedir
is in the same folder, and writes ``--jobs`` jobs the way a salt-master does:

publication
    ``prep_jid()`` and then ``save_load(jid, load, minions)``, as the master's
    ``_prep_jid`` and ``_prep_pub`` call them.
returns
    For each of ``--minions`` minions, ``salt.utils.job.store_job(opts, ret)``, which
    calls ``prep_jid(passed_jid=jid)``, ``save_load`` (for every backend but
    ``local_cache``) and ``returner(ret)``.

Each return carries a string of ``--return-bytes`` bytes. One process writes, one
call at a time, as one master worker does. Every run uses new buckets and a new
cachedir, the variants rotate, and the table shows the median and the range of
``--runs`` runs. The temporary folder's file system is printed with the figures,
because local_cache writes one directory and two files per return into it. The last
row gives the CPU that processes outside the benchmark used during the runs, from
``/proc/stat``. The nats-servers count as part of the benchmark.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import salt.config
import salt.loader
import salt.utils.job

from tests.bench.common import (
    describe_machine,
    machine_busy_seconds,
    own_cpu_seconds,
    positive_int,
)
from tests.support.nats_server import NatsServer

SYNC_ALWAYS_CONFIG = """jetstream {{
  store_dir: "{store_dir}"
  sync_interval: always
}}"""


@dataclass(frozen=True)
class Variant:
    """A job cache to measure: a Salt returner name and, for nats, the server URL."""

    label: str
    backend: str
    nats_url: str = ""


def file_system_of(path: Path) -> str:
    """Return the type and mount point of the file system that contains ``path``."""
    best = ("unknown", "")
    resolved = str(path.resolve())
    for line in Path("/proc/mounts").read_text().splitlines():
        _, mount_point, fs_type, *_ = line.split()
        if resolved.startswith(mount_point) and len(mount_point) > len(best[1]):
            best = (fs_type, mount_point)
    return f"{best[0]} on {best[1]}"


def master_opts(variant: Variant, index: int, work_dir: Path, run: int) -> dict[str, Any]:
    """Build a master config for one run; each run gets its own cachedir and buckets."""
    cachedir = work_dir / f"cache-{index}-{run}"
    return salt.config.apply_master_config(
        {
            "id": "bench-master",
            "cachedir": str(cachedir),
            "pki_dir": str(work_dir / "pki"),
            "sock_dir": str(work_dir / "sock"),
            "master_job_cache": variant.backend,
            "nats": {
                "servers": [variant.nats_url or "nats://127.0.0.1:4222"],
                "kv_jobs_bucket": f"bench_jobs_{run}",
                "kv_returns_bucket": f"bench_returns_{run}",
            },
        }
    )


def write_jobs(
    opts: dict[str, Any], jobs: int, minions: list[str], return_bytes: int
) -> tuple[float, int]:
    """Write the jobs and their returns; return the seconds taken and the returns written."""
    backend = opts["master_job_cache"]
    returners = salt.loader.returners(opts, {})
    mminion = SimpleNamespace(returners=returners)
    prep_jid = returners[f"{backend}.prep_jid"]
    save_load = returners[f"{backend}.save_load"]
    output = "x" * return_bytes

    # One job outside the timing, so that connecting and creating the buckets or the
    # cache directory are not counted.
    timed_jobs = [False] + [True] * jobs
    started = 0.0
    returns = 0
    for timed in timed_jobs:
        if timed and not started:
            started = time.perf_counter()
        jid = prep_jid(nocache=False, passed_jid=None)
        load = {
            "jid": jid,
            "fun": "cmd.run",
            "arg": ["echo bench"],
            "tgt": "bench*",
            "tgt_type": "glob",
            "user": "root",
        }
        save_load(jid, load, minions)
        for minion_id in minions:
            ret = {
                "jid": jid,
                "id": minion_id,
                "fun": "cmd.run",
                "fun_args": ["echo bench"],
                "return": output,
                "retcode": 0,
                "success": True,
            }
            salt.utils.job.store_job(opts, ret, event=None, mminion=mminion)
            if timed:
                returns += 1
    return time.perf_counter() - started, returns


@dataclass
class Run:
    """One backend's timed writes and the load of the rest of the machine meanwhile."""

    seconds: float
    returns: int
    other_cores_busy: float


def run_benchmark(args: argparse.Namespace) -> dict[str, list[Run]]:
    work_dir = Path(tempfile.mkdtemp(prefix="bench-jobcache-"))
    minions = [f"bench{index:03d}.example.com" for index in range(args.minions)]
    sync_dir = work_dir / "nats-sync"
    try:
        with (
            NatsServer(work_dir / "nats", jetstream=True) as server,
            NatsServer(
                sync_dir,
                name="nats-sync",
                extra_config=SYNC_ALWAYS_CONFIG.format(store_dir=sync_dir / "jetstream"),
            ) as sync_server,
        ):
            variants = [
                Variant("local_cache", "local_cache"),
                Variant("nats", "nats", server.url),
                Variant("nats, sync always", "nats", sync_server.url),
            ]
            results: dict[str, list[Run]] = {variant.label: [] for variant in variants}
            print(f"temporary folder: {work_dir} ({file_system_of(work_dir)})", flush=True)
            for run in range(args.runs):
                # Rotate the order, so that no variant always runs first.
                shift = run % len(variants)
                for index, variant in enumerate(variants[shift:] + variants[:shift]):
                    opts = master_opts(variant, index, work_dir, run)
                    busy_before = machine_busy_seconds()
                    own_before = own_cpu_seconds()
                    seconds, returns = write_jobs(opts, args.jobs, minions, args.return_bytes)
                    other_busy = (machine_busy_seconds() - busy_before) - (
                        own_cpu_seconds() - own_before
                    )
                    results[variant.label].append(
                        Run(seconds, returns, max(other_busy, 0) / seconds)
                    )
                    print(
                        f"run {run + 1} {variant.label}: {args.jobs} jobs, {returns} returns "
                        f"in {seconds:.2f} s",
                        flush=True,
                    )
            # The returner's client stays connected until this process exits, so its
            # warnings about the servers stopping are noise here.
            logging.getLogger("salt_nats").setLevel(logging.ERROR)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    return results


def summary(values: list[float], digits: int = 0) -> str:
    median, low, high = statistics.median(values), min(values), max(values)
    return f"{median:,.{digits}f} ({low:,.{digits}f} to {high:,.{digits}f})"


def print_table(args: argparse.Namespace, results: dict[str, list[Run]]) -> None:
    print()
    print(f"Machine: {describe_machine()}")
    print(
        f"{args.jobs} jobs, {args.minions} returns per job, returns of {args.return_bytes} "
        f"bytes, {args.runs} runs"
    )
    print()
    labels = list(results)
    print(f"| median (min to max) of {args.runs} runs | " + " | ".join(labels) + " |")
    print("|---|" + "---:|" * len(labels))
    rows = {
        "jobs written per second": [
            summary([args.jobs / run.seconds for run in results[label]]) for label in labels
        ],
        "returns stored per second": [
            summary([run.returns / run.seconds for run in results[label]]) for label in labels
        ],
        "other processes on the machine (CPU cores busy)": [
            summary([run.other_cores_busy for run in results[label]], digits=2) for label in labels
        ],
    }
    for label, cells in rows.items():
        print(f"| {label} | " + " | ".join(cells) + " |")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=positive_int, default=200, help="jobs per run")
    parser.add_argument("--minions", type=positive_int, default=10, help="returns per job")
    parser.add_argument(
        "--return-bytes", type=positive_int, default=1024, help="size of each return string"
    )
    parser.add_argument("--runs", type=positive_int, default=3, help="runs of each backend")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING)
    results = run_benchmark(args)
    print_table(args, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
