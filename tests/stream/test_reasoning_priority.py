"""run_by_priority: the worker's reasoning queue. Requests start in triage-priority order within the concurrency
bound, each finishes on its own time (no waiting for the slowest in the batch), and a failure is not swallowed."""
from __future__ import annotations

import asyncio
import time

import pytest

from stream.reasoning import run_by_priority


def test_highest_priority_first_within_the_bound():
    started, running, peak = [], 0, 0

    async def run(name: str) -> None:
        nonlocal running, peak
        started.append(name)
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.02)
        running -= 1

    jobs = [(2, "secondary-a"), (1, "indeterminate"), (0, "ischemic-a"), (2, "secondary-b"), (0, "ischemic-b")]
    asyncio.run(run_by_priority(jobs, 2, run))
    assert started == ["ischemic-a", "ischemic-b", "indeterminate", "secondary-a", "secondary-b"]
    assert peak == 2


def test_a_fast_answer_does_not_wait_for_a_slow_one():
    finished: dict[str, float] = {}
    t0 = time.monotonic()

    async def run(name: str) -> None:
        await asyncio.sleep(0.6 if name == "slow" else 0.05)
        finished[name] = time.monotonic() - t0

    asyncio.run(run_by_priority([(0, "slow"), (1, "fast")], 2, run))
    assert finished["fast"] < 0.3 < finished["slow"]


def test_a_failure_propagates_and_cancels_the_rest():
    done = []

    async def run(name: str) -> None:
        if name == "bad":
            raise RuntimeError("broker gone")
        await asyncio.sleep(0.5)
        done.append(name)

    with pytest.raises(RuntimeError, match="broker gone"):
        asyncio.run(run_by_priority([(0, "bad"), (1, "later")], 1, run))
    assert done == []
