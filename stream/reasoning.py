"""Wiring of the ECG-R1 reasoner into the worker: the backend from config, and its metrics."""
from __future__ import annotations

from engine.reasoner.base import Reasoner
from engine.reasoner.orchestrate import ReasoningResult
from stream import metrics
from stream.config import Settings


def make_reasoner(s: Settings) -> Reasoner | None:
    """The HTTP backend when a reasoner URL is configured; None turns reasoning off (reports go out preliminary)."""
    if not s.reasoner_url:
        return None
    from engine.reasoner.http_backend import HttpReasoner

    return HttpReasoner(s.reasoner_url, model=s.reasoner_model)


def observe_reasoning(result: ReasoningResult) -> None:
    metrics.REASONING.labels(result.status, result.code or "ok").inc()
    if result.latency_ms is not None:
        metrics.REASONING_SECONDS.observe(result.latency_ms / 1000)
    if result.crosscheck is not None:
        for claim in result.crosscheck.claims:
            metrics.REASONER_CLAIMS.labels(claim.kind, claim.verdict).inc()
