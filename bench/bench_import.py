"""``cronstream import apscheduler`` of N jobs from a SQLite job store: time and jobs/s.

Run: ``python bench/bench_import.py [--jobs 10000] [--rounds 3]``. The store is
APScheduler's own (``SQLAlchemyJobStore``, table made by a started scheduler), with a
mix of cron (several zones, weekdays, last days), interval, date and or-combined jobs
and a few paused ones; its rows are written in one transaction, as the store's own
``add_job`` writes each (APScheduler adding 10,000 jobs one by one takes about a minute).
Prints, per round, the time to read the store, to convert, to write the YAML, and the
whole command as a process, with jobs per second, and the machine.
"""

from __future__ import annotations

import argparse
import os
import pickle
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from apscheduler.job import Job
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.combining import OrTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger
from apscheduler.util import datetime_to_utc_timestamp

from service.cli.importer import yaml_text
from service.importers.apscheduler import convert_jobs
from service.importers.apscheduler_store import read_jobstore

ROOT = Path(__file__).resolve().parents[1]
ZONES = ("UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo")
START = datetime(2026, 1, 1, tzinfo=UTC)


def trigger(i: int) -> Any:
    zone = ZONES[i % len(ZONES)]
    match i % 6:
        case 0:
            return CronTrigger(hour=i % 24, minute=i % 60, timezone=zone)
        case 1:
            return CronTrigger(day_of_week="mon-fri", hour="9-17", minute="*/15", timezone=zone)
        case 2:
            return CronTrigger(day="last", hour=3, jitter=30, timezone=zone)
        case 3:
            return IntervalTrigger(seconds=60 + i % 3600, start_date=START)
        case 4:
            return DateTrigger(START + timedelta(days=3650, seconds=i))
        case _:
            return OrTrigger(
                [CronTrigger(hour=2, timezone=zone), CronTrigger(hour=14, timezone=zone)]
            )


def make_store(path: Path, count: int) -> str:
    url = f"sqlite:///{path}"
    store = SQLAlchemyJobStore(url=url)
    scheduler = BackgroundScheduler(jobstores={"default": store}, timezone="UTC")
    scheduler.start(paused=True)  # APScheduler makes its table
    scheduler.shutdown(wait=False)
    rows = []
    for i in range(count):
        job = Job(
            scheduler,
            id=f"job-{i}",
            func="os.path:join",
            trigger=trigger(i),
            executor="default",
            args=("a", str(i)),
            kwargs={},
            name=f"job {i}",
            misfire_grace_time=60,
            coalesce=i % 2 == 0,
            max_instances=1,
            next_run_time=None if i % 50 == 0 else START,
        )
        rows.append(
            {
                "id": job.id,
                "next_run_time": datetime_to_utc_timestamp(job.next_run_time),
                "job_state": pickle.dumps(job.__getstate__(), store.pickle_protocol),
            }
        )
    with store.engine.begin() as connection:
        connection.execute(store.jobs_t.insert(), rows)
    store.engine.dispose()
    return url


def in_process(url: str) -> tuple[float, float, float, int, int]:
    started = time.perf_counter()
    jobs = read_jobstore(url)
    read = time.perf_counter()
    result = convert_jobs(jobs, int(time.time() * 1000))
    converted = time.perf_counter()
    text = yaml_text(result)
    written = time.perf_counter()
    assert len(result.schedules) + len(result.skipped) == len(jobs)
    return read - started, converted - read, written - converted, len(result.schedules), len(text)


def as_process(url: str, out: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "service",
            "import",
            "apscheduler",
            "--jobstore",
            url,
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"import failed: {done.stderr}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()} {platform.python_implementation()} "
        f"{platform.python_version()}, {os.cpu_count()} CPUs"
    )
    with tempfile.TemporaryDirectory(prefix="bench-import-") as folder:
        made = time.perf_counter()
        url = make_store(Path(folder) / "jobs.sqlite", args.jobs)
        print(f"store: {args.jobs} jobs written in {time.perf_counter() - made:.1f} s")
        totals: list[float] = []
        for round_no in range(1, args.rounds + 1):
            read, convert, write, schedules, size = in_process(url)
            whole = as_process(url, Path(folder) / "out.yaml")
            totals.append(whole)
            print(
                f"round {round_no}: read {read:.2f} s, convert {convert:.2f} s "
                f"({args.jobs / convert:,.0f} jobs/s), YAML {write:.2f} s ({size / 1e6:.1f} MB, "
                f"{schedules} schedules); command {whole:.2f} s = {args.jobs / whole:,.0f} jobs/s"
            )
        best = min(totals)
        print(
            f"import apscheduler, {args.jobs} jobs: median {statistics.median(totals):.2f} s, "
            f"best {best:.2f} s = {args.jobs / best:,.0f} jobs/s"
        )


if __name__ == "__main__":
    main()
