"""``cronstream import apscheduler`` on real APScheduler 3 job stores (SQLite and Redis),
written by APScheduler's own scheduler in the test, and applied to a running service."""

from __future__ import annotations

import copy
import sqlite3
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
import yaml
from apscheduler.jobstores.redis import RedisJobStore
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.date import DateTrigger
from redis import Redis
from redis.connection import parse_url

from service.cli.main import main
from service.domain.spec import Spec, next_fire_times
from service.manifests.files import load_files
from service.store.embedded import free_port
from tests.process import Service, http_status, wait_until

BERLIN = ZoneInfo("Europe/Berlin")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
START = datetime(2026, 1, 5, 8, 0, 7, tzinfo=UTC)


def ms(value: datetime) -> int:
    return (value - EPOCH) // timedelta(milliseconds=1)


def record(path: str, word: str, *, times: int = 1) -> str:
    """The function an imported job calls on cronstream's workers (end-to-end test)."""
    with open(path, "a") as out:
        out.write(word * times + "\n")
    return word


def add_jobs(scheduler: BackgroundScheduler) -> dict[str, Any]:
    """Cron (across Berlin's DST changes), interval and date jobs, a paused one, one with an
    id cronstream cannot take, and one that cannot be converted; their triggers by id."""
    jobs = [
        scheduler.add_job(
            "os.path:join",
            "cron",
            ["a", "b"],
            id="nightly",
            hour=2,
            minute=30,
            timezone=BERLIN,
            misfire_grace_time=120,
            coalesce=True,
        ),
        scheduler.add_job(
            "os.path:basename",
            "cron",
            ["/x/y"],
            id="workdays",
            day_of_week="mon-fri",
            hour="9-17",
            minute="*/20",
            timezone=BERLIN,
            jitter=10,
        ),
        scheduler.add_job(
            f"{__name__}:record",
            "interval",
            ["/dev/null", "x"],
            {"times": 3},
            id="every 90s!",
            seconds=90,
            start_date=START,
            max_instances=2,
            coalesce=False,
        ),
        scheduler.add_job(
            "os.path:basename",
            "date",
            ["/once"],
            id="once",
            run_date=datetime(2030, 6, 1, 12, 0, tzinfo=UTC),
        ),
        scheduler.add_job(
            "os.path:basename",
            "cron",
            ["/p"],
            id="paused",
            day="last fri",
            hour=18,
            timezone="America/New_York",
        ),
        scheduler.add_job("os.path:basename", "cron", ["/w"], id="fortnightly", week="*/2"),
    ]
    scheduler.get_job("paused").pause()
    return {job.id: job.trigger for job in jobs}


def sqlite_store(tmp_path: Path) -> tuple[str, SQLAlchemyJobStore]:
    url = f"sqlite:///{tmp_path / 'jobs.sqlite'}"
    return url, SQLAlchemyJobStore(url=url)


def fill(store: Any) -> dict[str, Any]:
    scheduler = BackgroundScheduler(jobstores={"default": store}, timezone="UTC")
    scheduler.start(paused=True)  # writes the jobs to the store, runs nothing
    try:
        return add_jobs(scheduler)
    finally:
        scheduler.shutdown(wait=False)


@pytest.fixture(params=["sqlite", "redis"])
def jobstore(
    request: pytest.FixtureRequest, tmp_path: Path, redis_url: str
) -> Iterator[tuple[str, list[str], dict[str, Any]]]:
    """A real job store with the jobs above: its URL, the extra CLI options, the triggers."""
    if request.param == "sqlite":
        url, store = sqlite_store(tmp_path)
        yield url, [], fill(store)
        return
    key = f"aps{uuid.uuid4().hex[:8]}"
    where: dict[str, Any] = parse_url(redis_url)  # type: ignore[no-untyped-call]
    store = RedisJobStore(jobs_key=f"{key}.jobs", run_times_key=f"{key}.times", **where)
    triggers = fill(store)
    yield redis_url, ["--jobs-key", f"{key}.jobs"], triggers
    store.redis.delete(f"{key}.jobs", f"{key}.times")
    store.redis.close()


def raw(url: str, options: list[str]) -> dict[str, Any]:
    """Every byte the store holds for its jobs."""
    if url.startswith("sqlite:"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as db:
            rows = db.execute("SELECT id, next_run_time, job_state FROM apscheduler_jobs")
            return {row[0]: row[1:] for row in rows}
    client = Redis.from_url(url)
    try:
        return {str(k): v for k, v in client.hgetall(options[1]).items()}
    finally:
        client.close()


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def apscheduler_times(trigger: Any, after: datetime, count: int) -> list[int]:
    out, previous, now = [], None, after + timedelta(microseconds=1)
    for _ in range(count):
        fire = trigger.get_next_fire_time(previous, now)
        if fire is None:
            break
        out.append(ms(fire))
        previous = now = fire
    return out


# Where cronstream and APScheduler differ, and why cronstream is right: Berlin's 02:30 does
# not exist on 2026-03-29 (APScheduler runs at 03:30 CEST, an hour late; cronstream at
# 03:00, the end of the gap, as Vixie cron does) and happens twice on 2026-10-25
# (APScheduler runs the daily job twice; cronstream once).
DST_DIFFERENCES = {
    "nightly": (
        {
            ms(datetime(2026, 3, 29, 1, 30, tzinfo=UTC)),
            ms(datetime(2026, 10, 25, 1, 30, tzinfo=UTC)),
        },
        {ms(datetime(2026, 3, 29, 1, 0, tzinfo=UTC))},
    ),
}
AFTERS = [datetime(2026, 3, 20, tzinfo=UTC), datetime(2026, 10, 16, tzinfo=UTC)]


def test_import_writes_a_file_apply_reads_with_apschedulers_times(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    jobstore: tuple[str, list[str], dict[str, Any]],
) -> None:
    url, options, triggers = jobstore
    before = raw(url, options)
    out_file = tmp_path / "out" / "apscheduler.yaml"
    code, out, err = run(
        capsys, "import", "apscheduler", "--jobstore", url, *options, "--out", str(out_file)
    )
    assert code == 0, err
    assert out == ""
    assert "6 jobs: 5 schedules and 3 workflows, 1 not converted" in err
    assert (
        "not converted: job 'fortnightly': week='*/2': cronstream's cron has no week-of-year field"
        in err
    )
    assert "note: job 'every 90s!': id 'every 90s!' is not a valid cronstream id" in err
    # the store is read, not changed
    assert raw(url, options) == before
    assert len(before) == 6

    manifest = load_files([out_file])  # what apply will read, validated by the API's models
    document = yaml.safe_load(out_file.read_text())
    schedules = {s["id"]: s for s in document["schedules"]}
    renamed = next(i for i in schedules if i.startswith("every-90s-"))
    assert sorted(schedules) == sorted(["nightly", "workdays", renamed, "once", "paused"])
    assert {d.id for d in manifest.schedules} == set(schedules)
    assert {w["id"] for w in document["workflows"]} == {
        "os.path-join",
        "os.path-basename",
        f"{__name__}-record",
    }

    nightly = schedules["nightly"]
    assert nightly["spec"] == {"cron": ["30 2 * * *"], "timezone": "Europe/Berlin"}
    assert nightly["policy"] == {"catchup_window": "2m", "catchup": "latest", "overlap": "skip"}
    assert nightly["input"] == {"func": "os.path:join", "args": ["a", "b"], "kwargs": {}}
    assert schedules["workdays"]["spec"]["jitter"] == "10s"
    interval = schedules[renamed]
    assert interval["spec"]["intervals"] == [{"every": "1m30s", "offset": "7s"}]
    assert interval["policy"]["overlap"] == "allow_all" and interval["policy"]["catchup"] == "all"
    assert interval["input"]["kwargs"] == {"times": 3}
    assert schedules["once"]["max_actions"] == 1
    assert schedules["paused"]["paused"] is True
    assert schedules["paused"]["spec"]["cron"] == ["0 18 * * FRIL"]

    by_job = {"every 90s!": renamed, **{j: j for j in ("nightly", "workdays", "once", "paused")}}
    for job_id, schedule_id in by_job.items():
        spec = Spec.model_validate(schedules[schedule_id]["spec"])
        assert differences(spec, triggers[job_id]) == DST_DIFFERENCES.get(job_id, (set(), set()))


def differences(spec: Spec, trigger: Any) -> tuple[set[int], set[int]]:
    """The times only APScheduler has, and those only cronstream has, in the next 20 after
    each of AFTERS (nominal times: APScheduler's jitter is random, so it is left out)."""
    if hasattr(trigger, "jitter"):
        trigger = copy.copy(trigger)
        trigger.jitter = None
    only_theirs: set[int] = set()
    only_ours: set[int] = set()
    for after in AFTERS if not isinstance(trigger, DateTrigger) else [START]:
        ours = next_fire_times(spec, ms(after), 20)
        theirs = apscheduler_times(trigger, after, 20)
        limit = min(ours[-1], theirs[-1])  # one list may reach a time further than the other
        mine, its = {t for t in ours if t <= limit}, {t for t in theirs if t <= limit}
        assert len(mine & its) >= min(len(theirs), 18)
        only_theirs |= its - mine
        only_ours |= mine - its
    return only_theirs, only_ours


@pytest.fixture
def service(redis_url: str, tmp_path: Path) -> Iterator[tuple[Service, str]]:
    prefix = f"imp{uuid.uuid4().hex[:8]}"
    running = Service(tmp_path / "data", redis_url=redis_url, CRONSTREAM_KEY_PREFIX=prefix)
    try:
        yield running.wait_healthy(), prefix
    finally:
        assert running.stop() == 0


def test_import_apply_runs_the_jobs_in_a_running_service(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    redis_url: str,
    service: tuple[Service, str],
) -> None:
    running, prefix = service
    url, store = sqlite_store(tmp_path)
    calls = tmp_path / "calls.txt"
    scheduler = BackgroundScheduler(jobstores={"default": store}, timezone="UTC")
    scheduler.start(paused=True)
    try:
        scheduler.add_job(
            f"{__name__}:record",
            "interval",
            [str(calls), "tick"],
            {"times": 2},
            id="ticker",
            seconds=1,
            start_date=START,
        )
        scheduler.add_job(
            f"{__name__}:record", "cron", [str(calls), "x"], id="held", hour=3
        ).pause()
    finally:
        scheduler.shutdown(wait=False)

    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("CRONSTREAM_KEY_PREFIX", prefix)
    code, out, err = run(capsys, "import", "apscheduler", "--jobstore", url, "--apply")
    assert code == 0, err
    assert "+ schedule ticker" in out and "+ workflow " in out
    wait_until(lambda: calls.exists() and "ticktick" in calls.read_text(), 20, "the job to run")
    assert "x" not in calls.read_text().split()  # the paused job did not run

    def view(schedule_id: str) -> dict[str, Any]:
        import urllib.request

        with urllib.request.urlopen(f"{running.url}/v1/schedules/{schedule_id}", timeout=5) as r:
            return orjson.loads(r.read())  # type: ignore[no-any-return]

    wait_until(lambda: http_status(f"{running.url}/v1/schedules/held") == 200, 10, "the views")
    assert view("held")["paused"] is True
    assert view("ticker")["spec"]["intervals"] == [{"every": "1s", "offset": "0s"}]

    code, out, err = run(capsys, "import", "apscheduler", "--jobstore", url, "--apply")
    assert code == 0, err
    assert "Applied: no changes; 0 events appended" in out


def test_a_store_that_cannot_be_read_is_one_line_and_exit_1(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    missing = tmp_path / "none.sqlite"
    code, out, err = run(capsys, "import", "apscheduler", "--jobstore", f"sqlite:///{missing}")
    assert (code, out) == (1, "")
    assert err == f"cronstream: no SQLite job store at {missing}\n"
    assert not missing.exists()  # reading never creates a store
    empty = tmp_path / "empty.sqlite"
    sqlite3.connect(empty).close()
    code, _, err = run(capsys, "import", "apscheduler", "--jobstore", f"sqlite:///{empty}")
    assert code == 1 and err.startswith("cronstream: cannot read table 'apscheduler_jobs'")
    code, _, err = run(capsys, "import", "apscheduler", "--jobstore", "nosuchdb://x")
    assert code == 1 and err.startswith("cronstream: job store URL 'nosuchdb://x'")
    port = free_port()  # nothing listens there
    code, _, err = run(capsys, "import", "apscheduler", "--jobstore", f"redis://127.0.0.1:{port}/0")
    assert code == 1 and err.startswith(
        f"cronstream: cannot read the job store at redis://127.0.0.1:{port}/0"
    )
