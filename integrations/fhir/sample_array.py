"""FHIR Point-of-Care Device IG SampleArrayObservation chunks <-> Chunk (docs/SPEC.md §3, §11).

The IG's ECG example: one second per Observation (effectivePeriod start/end), one component per lead coded in
urn:iso:std:iso:11073:10101, valueSampledData with origin (-0.5 mV), period 8 ms and factor 0.001:
physical = origin + factor x data. E/U/L samples are flags. Signals that are not ECG (the IG's CVP example, pleth,
respiration) are skipped and named.
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from engine.errors import InvalidRecord
from engine.record import EcgRecord, lead_and_mark, lead_order, make_record
from integrations.chunk import Chunk
from integrations.errors import DecodeError
from integrations.fhir import codes
from integrations.fhir.datetimes import parse_fhir_datetime, to_fhir_datetime
from integrations.fhir.observation import _metadata, _source_id, decode_leads, load_observation
from integrations.fhir.sampled_data import format_microvolts
from integrations.fhir.validation import validate_resource
from integrations.senders import SenderRule

POCD_SAMPLE_ARRAY_PROFILE = "http://hl7.org/fhir/uv/pocd/StructureDefinition/SampleArrayObservation"


def is_pocd_sample_array(doc: dict[str, Any]) -> bool:
    """meta.profile names the PoCD SampleArrayObservation profile (any version suffix: `|1.0.0`)."""
    meta = doc.get("meta") if isinstance(doc.get("meta"), dict) else {}
    profiles = meta.get("profile") if isinstance(meta.get("profile"), list) else []
    return any(isinstance(p, str) and p.split("|", 1)[0] == POCD_SAMPLE_ARRAY_PROFILE for p in profiles)


def fhir_sender(doc: dict[str, Any]) -> tuple[str, str | None]:
    """(meta.source or '', device id) of an Observation: what sender rules match on."""
    meta = doc.get("meta") if isinstance(doc.get("meta"), dict) else {}
    source = meta.get("source") if isinstance(meta.get("source"), str) else ""
    device = doc.get("device") if isinstance(doc.get("device"), dict) else {}
    ident = device.get("identifier") if isinstance(device.get("identifier"), dict) else {}
    device_id = device.get("reference") or ident.get("value") or device.get("display")
    return source, device_id if isinstance(device_id, str) else None


def decode_sample_array(data: bytes, *, sender: SenderRule | None) -> Chunk:
    """One SampleArrayObservation (JSON or XML) -> Chunk with one segment (or none when it carries no ECG)."""
    return decode_sample_array_doc(load_observation(data), sender=sender)


def decode_sample_array_doc(doc: dict[str, Any], *, sender: SenderRule | None) -> Chunk:
    leads, rows, masks, rates, skipped = decode_leads(doc, sender)
    source, device_id = fhir_sender(doc)
    base = dict(skipped=tuple(skipped), sender=f"fhir:{source}", device_id=device_id, bed=(),
                source_id=_source_id(doc))
    if not leads:
        return Chunk(segments=(), **base)
    if len({r.size for r in rows}) > 1:
        shown = ", ".join(f"{lead}: {r.size}" for lead, r in zip(leads, rows, strict=True))
        raise DecodeError(f"leads have unequal lengths ({shown})", "length-mismatch")
    if not np.allclose(rates, rates[0], rtol=1e-9, atol=0.0):
        raise DecodeError("leads have different sampling intervals", "sampling-rate")
    order = sorted(range(len(leads)), key=lambda i: lead_order(lead_and_mark(leads[i])[0]))
    flagged_all = None
    if any(m is not None for m in masks):
        flagged_all = np.vstack([masks[i] if masks[i] is not None else np.zeros(rows[i].size, bool) for i in order])
    meta = _metadata(doc)
    _check_period(doc, rows[0].size, rates[0])
    try:
        record = make_record(np.vstack([rows[i] for i in order]), [leads[i] for i in order], rates[0],
                             base["source_id"], flagged=flagged_all, source_format="fhir", kind="chunk", **meta)
    except InvalidRecord as exc:
        raise DecodeError(exc.reason, exc.code) from None
    return Chunk(segments=(record,), **base)


def _check_period(doc: dict[str, Any], n: int, fs: float) -> None:
    """effectivePeriod and samples x period are two statements of the chunk's length: when they disagree by more
    than a tenth (and one sample), one of them is wrong (e.g. a period in seconds), so neither is trusted."""
    period = doc.get("effectivePeriod") if isinstance(doc.get("effectivePeriod"), dict) else {}
    start, end = parse_fhir_datetime(period.get("start")), parse_fhir_datetime(period.get("end"))
    if start is None or end is None or (start.tzinfo is None) != (end.tzinfo is None):
        return
    stated = (end - start).total_seconds()
    if stated > 0 and abs(stated - n / fs) > 0.1 * stated + 1.0 / fs:
        raise DecodeError(f"effectivePeriod lasts {stated:g} s but the samples last {n / fs:g} s", "sampling-rate")


# ---------------------------------------------------------------------------------------------------------- encode


def build_sample_array(
    record: EcgRecord,
    *,
    origin_mv: float = 0.0,
    factor: float = 0.001,
    identifier_value: str | None = None,
    source: str | None = None,
    device_reference: str | None = None,
) -> dict[str, Any]:
    """A PoCD SampleArrayObservation (R4) for one chunk record: data = round((mV - origin) / factor), so the
    default gives integer µV. Standard and monitoring leads are written (monitoring ones by name, no MDC code)."""
    start = record.acquired_at or datetime(2000, 1, 1)
    end = start + timedelta(seconds=record.duration_s)
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "id": (identifier_value or record.source_id).replace(":", "-").replace("|", "-")[:64],
        "meta": {"profile": [POCD_SAMPLE_ARRAY_PROFILE], **({"source": source} if source else {})},
        "status": "final",
        "code": {"coding": [{"system": codes.MDC_ISO_URN, "code": codes.MDC_ECG_ELEC_POTL,
                             "display": "MDC_ECG_ELEC_POTL"}]},
        "effectivePeriod": {"start": to_fhir_datetime(start), "end": to_fhir_datetime(end)},
    }
    if record.patient_id:
        obs["subject"] = {"reference": f"Patient/{record.patient_id}"}
    if device_reference or record.device_id:
        obs["device"] = {"reference": device_reference or f"DeviceMetric/{record.device_id}"}
    step_ms = 1000.0 / record.fs
    components = []
    for idx, lead in enumerate(record.leads):
        flagged = record.flagged[idx] if record.flagged is not None else None
        if lead in codes.POTL_CODE_BY_LEAD and lead not in record.lead_marks:
            coding = {"system": codes.MDC_ISO_URN, "code": codes.POTL_CODE_BY_LEAD[lead],
                      "display": codes.potl_mnemonic(lead)}
            concept: dict[str, Any] = {"coding": [coding]}
        else:
            concept = {"text": lead}
        shifted = record.signal[idx].astype(np.float64) - origin_mv
        components.append({
            "code": concept,
            "valueSampledData": {
                "origin": {"value": origin_mv, "unit": "mV", "system": codes.UCUM, "code": "mV"},
                "period": int(step_ms) if float(step_ms).is_integer() else round(step_ms, 9),
                "factor": factor,
                "dimensions": 1,
                # format_microvolts writes round(x * 1000): scale so that it writes round(shifted / factor)
                "data": format_microvolts(shifted * (0.001 / factor), flagged),
            },
        })
    obs["component"] = components
    return obs


def encode_sample_array(record: EcgRecord, *, fmt: str = "json", **options: Any) -> bytes:
    """build_sample_array as JSON or XML bytes, validated with the R4B model (the PoCD IG is on R4)."""
    obs = build_sample_array(record, **options)
    validate_resource(obs, "R4B")
    if fmt == "json":
        return json.dumps(obs, separators=(",", ":")).encode("utf-8")
    if fmt == "xml":
        from fhir.resources.R4B.observation import Observation

        xml = Observation.model_validate(obs).model_dump_xml()
        return xml if isinstance(xml, bytes) else xml.encode("utf-8")
    raise ValueError("fmt must be 'json' or 'xml'")
