"""normalise -> reason -> parse -> cross-check, as one call that never raises (no Kafka here: the worker calls it).

`reason_and_check` is for threads and scripts; `areason_and_check` for an asyncio caller (a faust agent): it
awaits the backend's `areason` under `asyncio.wait_for` (timeout_s plus a small grace, a safety net for a backend
that ignores its own deadline). Every failure is an "abandoned" result with the reason and a short code
(input refused, timeout, server down, HTTP error, unreadable response, internal error); the only exception that
escapes is asyncio cancellation, which belongs to the caller. A response is "completed" even when its format is
broken: `parsed.complete` and `parsed.problems` say how, and the claims found in what did arrive are still checked.
`to_report_dict` shapes a result for integrations.fhir.report.build_report_bundle(reasoning=...), which reads
model, version, status, answer and cross_check; the other keys are for the dashboard and metrics.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from engine.reasoner.base import RawReasoning, Reasoner
from engine.reasoner.crosscheck import CrossCheck, cross_check
from engine.reasoner.errors import ReasonerError
from engine.reasoner.normalise import NormalisedEcg, normalise
from engine.reasoner.parse import ParsedReasoning, parse_reasoning
from engine.reasoner.prompt import ECGR1_PROMPT
from engine.record import EcgRecord
from engine.result import Analysis

GRACE_S = 2.0


@dataclass
class ReasoningResult:
    status: Literal["completed", "abandoned"]
    reason: str | None = None  # why it was abandoned, or what went wrong after a response arrived
    code: str | None = None  # short and stable, for metrics: timeout, unreachable, http-500, missing-leads, ...
    parsed: ParsedReasoning | None = None
    crosscheck: CrossCheck | None = None
    model: str | None = None
    model_version: str | None = None
    latency_ms: float | None = None
    tokens: int | None = None
    finish_reason: str | None = None
    raw_text: str | None = None  # kept for audit: the model's words as received
    input_notes: list[str] = field(default_factory=list)  # what normalisation did (resampled, padded, derived)


def reason_and_check(record: EcgRecord, analysis: Analysis, reasoner: Reasoner, timeout_s: float, *,
                     prompt: str = ECGR1_PROMPT) -> ReasoningResult:
    started = time.monotonic()
    norm: NormalisedEcg | None = None
    try:
        norm = normalise(record)
        raw = reasoner.reason(norm.signal, prompt, timeout_s=timeout_s)
    except ReasonerError as exc:
        return _abandoned(reasoner, exc.reason, exc.code, started, norm)
    except Exception as exc:  # noqa: BLE001 - the contract is "never raises": an unknown failure is abandoned
        return _abandoned(reasoner, f"internal error: {type(exc).__name__}: {exc}", "internal", started, norm)
    return _completed(reasoner, raw, analysis, norm)


async def areason_and_check(record: EcgRecord, analysis: Analysis, reasoner: Reasoner, timeout_s: float, *,
                            prompt: str = ECGR1_PROMPT) -> ReasoningResult:
    started = time.monotonic()
    norm: NormalisedEcg | None = None
    try:
        norm = normalise(record)
        raw = await asyncio.wait_for(reasoner.areason(norm.signal, prompt, timeout_s=timeout_s),
                                     timeout_s + GRACE_S)
    except asyncio.CancelledError:
        raise
    except ReasonerError as exc:
        return _abandoned(reasoner, exc.reason, exc.code, started, norm)
    except TimeoutError:
        return _abandoned(reasoner, f"no answer within {timeout_s:g} s", "timeout", started, norm)
    except Exception as exc:  # noqa: BLE001
        return _abandoned(reasoner, f"internal error: {type(exc).__name__}: {exc}", "internal", started, norm)
    return _completed(reasoner, raw, analysis, norm)


def _abandoned(reasoner: Reasoner, reason: str, code: str, started: float,
               norm: NormalisedEcg | None) -> ReasoningResult:
    return ReasoningResult(status="abandoned", reason=reason, code=code, model=_model_name(reasoner),
                           model_version=reasoner.model_version,
                           latency_ms=round((time.monotonic() - started) * 1000, 1),
                           input_notes=list(norm.notes) if norm else [])


def _completed(reasoner: Reasoner, raw: RawReasoning, analysis: Analysis, norm: NormalisedEcg) -> ReasoningResult:
    result = ReasoningResult(status="completed", model=raw.model, model_version=reasoner.model_version,
                             latency_ms=raw.latency_ms, tokens=raw.tokens, finish_reason=raw.finish_reason,
                             raw_text=raw.text, input_notes=list(norm.notes))
    try:
        result.parsed = parse_reasoning(raw.text, raw.finish_reason)
        result.crosscheck = cross_check(result.parsed, analysis)
    except Exception as exc:  # noqa: BLE001 - keep the answer even if checking it failed
        result.reason, result.code = f"cross-check failed: {type(exc).__name__}: {exc}", "crosscheck-error"
    return result


def _model_name(reasoner: Reasoner) -> str:
    return str(reasoner.model or type(reasoner).__name__)


def to_report_dict(result: ReasoningResult) -> dict[str, Any]:
    """The `reasoning` argument of build_report_bundle (keys it reads: model, version, status, answer, cross_check)."""
    parsed, cc = result.parsed, result.crosscheck
    lines: list[str] = []
    if parsed is not None and not parsed.complete:
        lines.append(f"model output incomplete ({'; '.join(parsed.problems)}); claims checked on the part received")
    if cc is not None:
        lines += cc.lines()
    elif result.status == "completed" and result.reason:
        lines.append(result.reason)
    return {
        "model": result.model or "ECG-R1",
        "version": result.model_version,
        "status": result.status,
        "answer": list(parsed.labels) if parsed else [],
        "cross_check": lines,
        "reason": result.reason,
        "code": result.code,
        "complete": bool(parsed.complete) if parsed else False,
        "problems": list(parsed.problems) if parsed else [],
        "latency_ms": result.latency_ms,
        "tokens": result.tokens,
        "counts": dict(cc.counts) if cc else {},
        "contradiction_rate": cc.contradiction_rate if cc else None,
        "input_notes": list(result.input_notes),
    }
