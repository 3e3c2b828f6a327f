"""Report versions as the worker puts them on the reports topic (collection bundles from the real builder,
integrations/fhir/report.py), for the FHIR sink's tests: any report id, version, status, patient and lead set.

The analyses are hand-made (the sink's tests are about delivery, not about the engine); the pipeline tests produce
real ones from real ECGs.
"""
from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np

from engine.record import make_record
from engine.result import Analysis, LeadResult, PriorSummary, Triage, TwiGroup
from integrations.fhir.report import build_report_bundle, bundle_bytes

LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
INFERIOR = ("II", "III", "aVF")
MRN_SYSTEM = "urn:oid:1.2.3.4.5.6.7.8"  # a made-up hospital MRN namespace (assigning authority)
ACQUIRED = datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC)


def _lead(name: str, inverted: bool) -> LeadResult:
    return LeadResult(
        lead=name, quality="ok", t_polarity="negative" if inverted else "positive",
        t_amplitude_mv=-0.254 if inverted else 0.31, t_symmetry=1.08 if inverted else 0.7, t_peak_ms=300.0,
        st_j60_mv=-0.021, r_amplitude_mv=0.9, s_amplitude_mv=-0.2, qrs_duration_ms=92.4, qrs_mostly_positive=True,
    )


def analysis(leads: tuple[str, ...] = LEADS, twi: bool = True) -> Analysis:
    results = {n: _lead(n, twi and n in INFERIOR) for n in leads}
    groups = [TwiGroup(name="inferior", leads=list(INFERIOR), depths_mv={"II": 0.254, "III": 0.2, "aVF": 0.22},
                       rule="T depth > 0.1 mV in >= 2 contiguous leads with R >= 0.3 mV", novelty="new")] if twi else []
    triage = (Triage("ischemic-pattern", ["symmetric TWI in II, III, aVF"]) if twi
              else Triage("no-twi", ["no lead with T depth > 0.1 mV"]))
    return Analysis(
        engine_version="0.1.0", fs=500.0, duration_s=10.0, truncated=False, heart_rate_bpm=71.6, rr_irregularity=0.04,
        rhythm="sinus", leads=results, absent_leads=[n for n in LEADS if n not in leads], derived_leads=[],
        twi=groups, novelty="new" if twi else "none", secondary=[], triage=triage,
        summary=PriorSummary(1, "hl7:SRC|WARD|MSG1", ACQUIRED.isoformat(), {}, [list(INFERIOR)] if twi else []),
    )


def report_bundle(report_id: str, version: int = 1, *, status: str | None = None, mrn: str | None = "MRN-1",
                  mrn_system: str | None = MRN_SYSTEM, leads: tuple[str, ...] = LEADS,
                  acquired_at: datetime = ACQUIRED, fhir_version: str = "R4B", reasoning: dict | None = None) -> dict:
    """One report version (collection bundle). mrn=None: no patient; mrn_system=None: a FHIR logical id."""
    status = status or ("partial" if version == 1 and reasoning is None else "preliminary")
    record = make_record(np.zeros((len(leads), 5000)), list(leads), 500.0, f"hl7:MONITOR|ICU|{report_id}",
                         patient_id=mrn, patient_system=mrn_system if mrn else None, acquired_at=acquired_at,
                         source_format="hl7")
    if version > 1 and reasoning is None:
        reasoning = {"model": "twiwatch-standin-NOT-ECG-R1", "version": "test", "status": "complete",
                     "answer": "Inferior T-wave inversion.", "cross_check": []}
    return build_report_bundle(
        analysis(leads), record, report_id=report_id, version=version, status=status,
        issued=acquired_at + timedelta(seconds=version), fhir_version=fhir_version, reasoning=reasoning,
        model_versions={"encoder": "test-encoder"},
    )


def report_bytes(*args, **kwargs) -> bytes:
    return bundle_bytes(report_bundle(*args, **kwargs))


def dumps(bundle: dict) -> bytes:
    return json.dumps(bundle).encode()
