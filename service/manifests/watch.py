"""``serve --config-dir DIR``: apply a directory of files at start and after each change.

The watcher polls (files on network or container mounts do not all send change
notifications): every ``interval_s`` it hashes the directory's files (their names and
contents). It applies at once at start; after that, a change is applied when the
directory has stayed the same for one whole interval, so an editor's save in several
writes is applied once, as its final content. An invalid directory is logged, file by
file, and applied again only when it changes; a Redis outage is retried every interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

from service.errors import CronstreamError
from service.manifests.files import InvalidFiles, find_files
from service.manifests.plan import Options
from service.manifests.reconcile import Report, apply_paths
from service.store.eventstore import EventStore

log = logging.getLogger(__name__)

ACTOR = "serve --config-dir"
MIN_INTERVAL_S = 0.05
MAX_INTERVAL_S = 3600.0


@dataclass(frozen=True)
class WatchSettings:
    directory: Path
    options: Options
    interval_s: float = 1.0


def fingerprint(directory: Path) -> str:
    """A digest of every file ``apply`` would read under ``directory``: names and bytes."""
    digest = hashlib.sha256()
    _, files = find_files(directory)
    for path in files:
        digest.update(path.relative_to(directory).as_posix().encode() + b"\0")
        with contextlib.suppress(OSError):  # removed meanwhile: the next poll sees it
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


class ConfigWatcher:
    """Applies ``settings.directory`` to ``store`` once per change, until ``stop``."""

    def __init__(self, store: EventStore, settings: WatchSettings) -> None:
        self.store = store
        self.settings = settings
        self.interval_s = min(max(settings.interval_s, MIN_INTERVAL_S), MAX_INTERVAL_S)
        self.applies = 0  # how many times the directory was applied (for logs and tests)
        self.looks = 0  # how many times the directory was looked at

    async def run(self, stop: asyncio.Event) -> None:
        applied: str | None = None  # the fingerprint last applied (or found invalid)
        seen: str | None = None  # the fingerprint of the previous poll
        while not stop.is_set():
            now = await self._look(seen)
            settled = applied is None or now == seen  # at start, apply at once
            if now is not None and now != applied and settled and await self._apply():
                applied = now
            seen = now
            self.looks += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.interval_s)

    async def _look(self, seen: str | None) -> str | None:
        """The directory's fingerprint; None (said once, not at every look) while it
        cannot be read."""
        try:
            return await asyncio.to_thread(fingerprint, self.settings.directory)
        except OSError as exc:
            if seen is not None or self.looks == 0:
                log.error("config dir %s cannot be read: %s", self.settings.directory, exc)
            return None

    async def _apply(self) -> bool:
        """Apply the directory; False when it should be tried again (Redis failed)."""
        try:
            report = await apply_paths(
                self.store, [self.settings.directory], self.settings.options, actor=ACTOR
            )
        except InvalidFiles as exc:
            for error in exc.errors:
                log.error("config dir: %s", error)
            log.error("config dir %s is invalid: nothing was applied", self.settings.directory)
            return True
        except (CronstreamError, OSError) as exc:
            log.error("config dir %s was not applied: %s", self.settings.directory, exc)
            return False
        self.applies += 1
        _log_report(report)
        return True


def _log_report(report: Report) -> None:
    for source, counts in report.counts().items():
        changed = {k: v for k, v in counts.items() if k != "unchanged" and v}
        if changed:
            log.info("config dir: %s: %s", source, changed)
    for failed in report.failed:
        log.error("config dir: %s %s: %s", failed.change.kind, failed.change.id, failed.error)
    log.info(
        "config dir applied: %d changes, %d events appended",
        len(report.plan.writes),
        report.appended,
    )
