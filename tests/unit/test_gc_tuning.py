"""A ``serve`` process collects cyclic garbage less often than Python's defaults, and
leaves what start-up made out of the collector's walks."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from service.server import GC_THRESHOLDS, tune_gc


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


def test_serve_collects_less_often_and_freezes_what_start_up_made(restored_gc: None) -> None:
    before = gc.get_freeze_count()
    tune_gc()
    assert gc.get_threshold() == GC_THRESHOLDS
    assert gc.get_threshold()[0] > 700  # Python's default young threshold
    assert gc.get_freeze_count() > before
