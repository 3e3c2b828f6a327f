"""Monitor episodes (integrations/fhir/episode.py bundles, §13.1 kind episode): queued under their own class, one
alert per episode across its versions, the windows' signals kept with the message."""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from integrations.dashboard.store import AlertFilter, alert_detail, ingest_analysis, ingest_report, list_alerts
from integrations.fhir.episode import build_episode_bundle
from integrations.fhir.report import bundle_bytes
from tests.support.dashboard_messages import signal_of

START = 1_714_557_600.0  # 2024-05-01T10:00:00Z


@dataclass
class EpisodeEvent:
    """What the monitor's episode machine emits (stream/monitor), as data."""

    kind: str
    version: int
    at_s: float
    episode_start_s: float = START
    leads: tuple[str, ...] = ("II", "III")
    depth_mv: dict = field(default_factory=lambda: {"II": 0.21, "III": 0.18})
    baseline_source: str = "first 10 minutes on this bed"
    baseline_mv: dict = field(default_factory=lambda: {"II": 0.25, "III": 0.2})
    reason: str = "T amplitude fell below baseline"


def _episode(ev: EpisodeEvent, rid: str) -> tuple[bytes, dict]:
    bundle = build_episode_bundle(ev, report_id=rid, patient_id="MRN-77", patient_system="urn:oid:1.2.3",
                                  stream_source="gw|dev1|bed4", monitored_leads=["I", "II", "III", "V"],
                                  lead_marks={}, bed="4", device_id="dev1", software_version="test",
                                  reasoning_note="No reasoning was requested for this monitor episode.")
    headers = {"twiwatch.report-id": rid.encode(), "twiwatch.version": str(ev.version).encode(),
               "twiwatch.status": b"preliminary", "twiwatch.kind": b"monitor-episode"}
    return bundle_bytes(bundle), headers


def test_episode_versions_make_one_alert(store, ptbxl):
    record = ptbxl["143"].load()  # a real 500 Hz ECG stands in for the opening window's signal
    rid = "episode-report-1"
    with store.session() as s:
        for ev in (EpisodeEvent("opened", 1, START + 10), EpisodeEvent("resolved", 2, START + 600)):
            value, headers = _episode(ev, rid)
            ingest_report(s, value, headers, int(ev.at_s * 1000))
        msg = {"schema": "twiwatch.analysis/1", "kind": "episode", "research_only": True, "report_id": rid,
               "version": 2, "status": "preliminary", "issued": "2024-05-01T10:10:00Z", "source_id": "gw|dev1|bed4",
               "acquired_at": None, "patient": {"mrn": "MRN-77", "system": "urn:oid:1.2.3"},
               "location": {"unit": "CCU", "bed": "4", "device": "dev1"}, "analysis": None, "prior": None,
               "head": None, "reasoning": None,
               "episode": {"episode_id": "ep-1", "stream": "s", "state": "resolved", "start": "2024-05-01T10:00:00Z",
                           "end": "2024-05-01T10:10:00Z", "leads": ["II", "III"], "depth_mv": {"II": 0.21},
                           "baseline_mv": {"II": 0.25}, "baseline_source": "first 10 minutes", "trend": [],
                           "windows": {"opened": signal_of(record), "closed": None}}}
        ingest_analysis(s, json.dumps(msg).encode())
        s.commit()
        rows, _ = list_alerts(s, AlertFilter(cls="episode"), None)
        detail = alert_detail(s, rid)
    assert len(rows) == 1
    row = rows[0]
    assert (row.kind, row.cls, row.version, row.novelty, row.unit, row.mrn) == ("episode", "episode", 2, "new",
                                                                              "CCU", "MRN-77")
    assert row.group_key == "episode:ep-1" and row.time.isoformat() == "2024-05-01T10:00:00+00:00"
    assert detail.episode["windows"]["opened"] == signal_of(record)
    assert detail.report["diagnostic_report"]["effectivePeriod"]["end"] == "2024-05-01T10:10:00Z"
    assert [v["version"] for v in detail.versions] == [1, 2]
