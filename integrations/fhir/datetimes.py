"""FHIR dateTime/instant strings <-> datetime.

FHIR requires a zone on any dateTime with a time. Naive datetimes (WFDB headers, HL7 MSH-7 without an offset) are
written as UTC: the codec that read them is the place to attach the sender's zone.
"""
from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any


def to_fhir_datetime(value: datetime) -> str:
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    text = aware.isoformat(timespec="milliseconds" if aware.microsecond else "seconds")
    return text.replace("+00:00", "Z")


def to_fhir_instant(value: datetime) -> str:
    """Instants (issued, recorded, timestamp) normalised to UTC so that equal times give equal strings."""
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return to_fhir_datetime(aware.astimezone(UTC))


def parse_fhir_datetime(value: Any) -> datetime | None:
    """A dateTime with a time part; partial dates ("2024", "2024-05", "2024-05-01") say too little and give None."""
    if not isinstance(value, str) or "T" not in value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def parse_fhir_date(value: Any) -> date | None:
    if not isinstance(value, str) or len(value) != 10:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None
