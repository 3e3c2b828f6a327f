"""Dead letters: the original bytes (first 1 MiB when over the size limit) with the reason in headers.

The layout follows Kafka Connect's DLQ convention (value = original bytes, metadata in headers), so any Kafka
tool can inspect and re-drive them.
"""
from __future__ import annotations

import hashlib
from typing import Any

KEEP_WHEN_TOO_LARGE = 1024 * 1024
PREFIX = "twiwatch.dlq."


def deadletter_record(
    raw: bytes,
    *,
    reason: str,
    error_class: str,
    code: str,
    source_topic: str | None = None,
    partition: int | None = None,
    offset: int | None = None,
    timestamp_ms: int | None = None,
    max_message_bytes: int,
) -> tuple[bytes, list[tuple[str, bytes]]]:
    """Value and headers for a dead letter. Reasons never carry patient data (decoders guarantee it)."""
    too_large = len(raw) > max_message_bytes
    value = raw[:KEEP_WHEN_TOO_LARGE] if too_large else raw
    fields: dict[str, Any] = {
        "reason": reason[:2000],
        "error.class": error_class,
        "error.code": code,
        "source.topic": source_topic,
        "source.partition": partition,
        "source.offset": offset,
        "source.timestamp": timestamp_ms,
        "original.size": len(raw),
        "original.sha256": hashlib.sha256(raw).hexdigest(),
        "original.truncated": too_large,
    }
    headers = [(PREFIX + k, str(v).encode("utf-8")) for k, v in fields.items() if v is not None]
    return value, headers


def read_headers(headers: list[tuple[str, bytes]] | dict | None) -> dict[str, str]:
    """The dead-letter metadata back as a dict (for the e2e checker, tests and tools)."""
    items = headers.items() if isinstance(headers, dict) else (headers or [])
    return {k[len(PREFIX):]: v.decode("utf-8") for k, v in items if k.startswith(PREFIX)}
