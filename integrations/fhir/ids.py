"""Deterministic resource ids and bundle fullUrls, derived from the report identifier (no random uuids): the same
analysis, report id and version give byte-identical bundles, and a redelivered report lands on the same resources."""
from __future__ import annotations

import hashlib
import re
import uuid

_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:twiwatch:fhir")


def is_fhir_id(value: str) -> bool:
    return _FHIR_ID.fullmatch(value) is not None


def _digest(text: str, n: int) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:n]


def resource_id(report_id: str, *parts: str) -> str:
    """`twi-<report_id>-<parts>`; a hash stands in where the report id or the result would break the FHIR id rule
    ([A-Za-z0-9-.]{1,64}). The prefix keeps ids non-numeric, which servers that accept client ids require."""
    base = report_id if is_fhir_id(report_id) and len(report_id) <= 40 else _digest(report_id, 32)
    rid = "-".join(("twi", base) + tuple(p.lower() for p in parts))
    return rid if is_fhir_id(rid) else "twi-" + _digest(rid, 40)


def full_url(resource_type: str, rid: str) -> str:
    """urn:uuid fullUrl (uuid5 of type/id): references between entries work in collection and transaction bundles."""
    return "urn:uuid:" + str(uuid.uuid5(_NAMESPACE, f"{resource_type}/{rid}"))
