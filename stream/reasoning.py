"""Wiring of the ECG-R1 reasoner into the worker: the backend from config, and its metrics."""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from engine.reasoner.base import Reasoner
from engine.reasoner.orchestrate import ReasoningResult
from stream import metrics
from stream.config import ReasonerClientSettings

T = TypeVar("T")


def make_reasoner(s: ReasonerClientSettings) -> Reasoner | None:
    """The HTTP backend when a reasoner URL is configured; None turns reasoning off (reports go out preliminary)."""
    if not s.reasoner_url:
        return None
    from integrations.reasoner.http_client import HttpReasoner

    return HttpReasoner(s.reasoner_url, model=s.reasoner_model)


def observe_reasoning(result: ReasoningResult) -> None:
    metrics.REASONING.labels(result.status, result.code or "ok").inc()
    if result.latency_ms is not None:
        metrics.REASONING_SECONDS.observe(result.latency_ms / 1000)
    if result.crosscheck is not None:
        for claim in result.crosscheck.claims:
            metrics.REASONER_CLAIMS.labels(claim.kind, claim.verdict).inc()


async def run_by_priority(jobs: list[tuple[int, T]], concurrency: int,
                          run: Callable[[T], Awaitable[None]]) -> None:
    """Run `run(item)` for every (priority, item), at most `concurrency` at once, lowest priority number first.

    Each job starts as soon as a slot frees and its result is written by `run` itself, so a fast answer never waits
    for a slow one in the same batch (reasoned version within the reasoner's latency + 1 s). asyncio's semaphore
    wakes waiters in arrival order and the tasks arrive in priority order, so ischaemic-pattern requests take free
    slots before indeterminate ones, and those before secondary causes. The first exception cancels the rest and
    propagates (the caller must not acknowledge the batch then)."""
    slots = asyncio.Semaphore(concurrency)

    async def one(item: T) -> None:
        async with slots:
            await run(item)

    tasks = [asyncio.ensure_future(one(item)) for _, item in sorted(jobs, key=lambda job: job[0])]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
