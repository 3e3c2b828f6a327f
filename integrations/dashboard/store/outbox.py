"""Publish the outbox (actions.py writes it) to the adjudications topic (docs/SPEC.md §13.3).

At least once: a row is marked sent only after the broker acknowledged it (acks as the producer is configured; use
acks="all"), and never deleted before; a publisher that dies between the ack and the mark sends the row again on
its next run, and consumers deduplicate on action_id. On PostgreSQL the pending rows are claimed with FOR UPDATE
SKIP LOCKED for the run, so two replicas publishing at once do not send the same row twice.
"""
from __future__ import annotations

import logging
from typing import Any

from kafka import KafkaProducer
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from integrations.dashboard.store.models import OutboxRow, utcnow

log = logging.getLogger(__name__)
ACK_TIMEOUT_S = 30.0


def pending_count(s: Session) -> int:
    from sqlalchemy import func

    return s.scalar(select(func.count()).select_from(OutboxRow).where(OutboxRow.sent_at.is_(None))) or 0


def publish_pending(factory: sessionmaker[Session], producer: KafkaProducer, topic: str, limit: int = 100) -> int:
    """Send up to `limit` pending rows in order (key: the report id), wait for their acks, mark them sent; returns
    how many were acknowledged. A row whose send fails stays pending for the next run."""
    with factory() as s:
        rows = list(s.scalars(select(OutboxRow).where(OutboxRow.sent_at.is_(None)).order_by(OutboxRow.id)
                              .limit(limit).with_for_update(skip_locked=True)))
        if not rows:
            return 0
        futures: list[tuple[OutboxRow, Any]] = []
        for row in rows:
            try:
                futures.append((row, producer.send(topic, key=row.key.encode(), value=row.payload.encode(),
                                                   headers=[("twiwatch.research-only", b"true")])))
            except Exception as exc:  # noqa: BLE001 - the broker is unreachable or the producer closed: retry later
                log.warning("outbox: send failed (%s); %d row(s) stay pending", type(exc).__name__, len(rows))
                break
        producer.flush(timeout=ACK_TIMEOUT_S)
        sent = 0
        for row, future in futures:
            try:
                future.get(timeout=ACK_TIMEOUT_S)
            except Exception as exc:  # noqa: BLE001 - not acknowledged: stays pending
                log.warning("outbox: row %d not acknowledged (%s)", row.id, type(exc).__name__)
                continue
            row.sent_at = utcnow()
            sent += 1
        s.commit()
        return sent
