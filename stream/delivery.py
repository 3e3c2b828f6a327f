"""The worker's delivery rules, in one place: when offsets may be committed, and what happens when they may not.

At least once, made exactly-once where it counts (docs/SPEC.md §10). faust commits an offset only after the producer
has flushed what the event sent; the analyse stage writes a report, waits for the broker's ack, and only then records
the ECG in the patient's table (its recent reported source ids, beyond the priors), so a redelivered message that is
already in the table is skipped. What remains is a narrow window (killed after the report's ack, before the table's
changelog write) in which a redelivery writes a byte-identical copy of the report; consumers are idempotent on
(identifier, versionId). faust's `exactly_once` (TWIWATCH_EXACTLY_ONCE) is available but off by default: under SIGKILL
it still exposed second copies to read_committed consumers (tests/stream/test_pipeline_kafka.py).

Three rules close the gaps faust leaves:
- `guarded`: nothing escapes a stage's processing into faust, which would ack the whole batch.
- `die`: a stage that cannot write its output (a report, or the dead letter replacing it) ends the process without
  committing; the messages are redelivered to whichever worker takes the partitions.
- `stopped_mid_batch`: on SIGTERM inside a batch, what was sent is flushed and the process ends uncommitted.
"""
from __future__ import annotations

import asyncio
import logging
import os
import traceback
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

log = logging.getLogger("twiwatch.worker")

EXIT_UNWRITTEN = 70  # EX_SOFTWARE: output could not be written; the supervisor restarts the worker


def one_line(exc: BaseException) -> str:
    """An exception as one log line: its type and message, no traceback (which could quote data)."""
    return "".join(traceback.format_exception_only(exc)).strip()


def die(stage: str, exc: BaseException) -> NoReturn:
    """faust acks a batch's events in a `finally` (also when the loop body raises or is cancelled), so carrying on
    would commit offsets past messages that produced nothing; exiting now leaves them uncommitted."""
    log.critical("%s stage stopped before its output was written (%s); exiting without committing, the messages "
                 "will be redelivered", stage, one_line(exc))
    logging.shutdown()
    os._exit(EXIT_UNWRITTEN)


async def guarded(app: Any, stage: str, work: Awaitable[None]) -> None:
    """One event's or batch's processing, from which nothing may escape into faust."""
    try:
        await work
    except asyncio.CancelledError:
        await stopped_mid_batch(app, stage)
    except BaseException as exc:  # noqa: BLE001 - see die()
        die(stage, exc)


async def stopped_mid_batch(app: Any, stage: str) -> None:
    """The worker is stopping (SIGTERM) inside a batch. faust would ack the whole batch on the way out; instead what
    was sent (reports, table changelog writes) is flushed and the process ends without committing, so the rest of
    the batch is redelivered and the ECGs already reported are recognised as such."""
    if not app.should_stop or app.crashed:  # a crash is not a stop: exit non-zero, uncommitted
        die(stage, asyncio.CancelledError())
    try:
        await asyncio.wait_for(app.producer.flush(), timeout=10)
    except BaseException as exc:  # noqa: BLE001 - exiting either way; say whether the flush completed
        log.warning("%s stage: flush on stop did not complete (%s)", stage, type(exc).__name__)
    log.info("%s stage stopped mid-batch: sent output flushed, offsets not committed, the rest is redelivered", stage)
    logging.shutdown()
    os._exit(0)


@contextmanager
def event_context(stream: Any, event: Any) -> Iterator[None]:
    """faust logs a table write to the changelog partition of the stream's *current* event. In a take_events batch
    that must be the written ECG's event (else its state is restored to another partition's owner), and afterwards
    the stream's own current event (the next one, already buffered in the background) must be put back."""
    saved = stream.current_event
    stream._set_current_event(event)
    try:
        yield
    finally:
        stream._set_current_event(saved)
