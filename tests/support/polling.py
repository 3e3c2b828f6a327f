"""Waiting for a real broker's output in tests."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(fetch: Callable[[], T], done: Callable[[T], object], timeout_s: float = 120.0) -> T:
    """fetch() every second until done(value) or the time is up; the last value either way, so the test's own
    asserts say what is off."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = fetch()
        if done(value) or time.monotonic() > deadline:
            return value
        time.sleep(1.0)
