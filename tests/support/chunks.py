"""Real recordings cut into monitor-style pieces for the chunk decoder tests (samples/: PTB-XL v1.0.3, CC BY 4.0)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from engine.record import EcgRecord, make_record
from integrations.datasets.wfdb_io import read_wfdb
from integrations.senders import SenderMatch, SenderRule, SenderRules

ROOT = Path(__file__).resolve().parents[2]
PTBXL_500 = ROOT / "samples" / "ptbxl" / "records500" / "00000" / "00143_hr"  # PTB-XL ecg_id 143, 500 Hz, real mV
START = datetime(2025, 3, 4, 5, 6, 7, tzinfo=timezone(timedelta(hours=1)))
GATEWAY = SenderRule(name="mindray", match=SenderMatch(hl7_app="EGATEWAY", hl7_facility="ICU"), kind="chunk",
                     bed_component=2)
CHUNK_RULES = SenderRules(senders=(GATEWAY,))


def monitoring_piece(seconds: float, *, leads=("I", "II", "III", "V2"), names=("I", "II", "III", "V"),
                     offset_s: float = 0.0, kind: str = "chunk") -> EcgRecord:
    """`seconds` of a real 12-lead recording, the leads a 5-electrode monitor shows (V2 sent as an unnamed chest
    lead `V`), as the record a gateway chunk of that length should decode to."""
    full = read_wfdb(PTBXL_500)
    n0, n = int(offset_s * full.fs), int(round(seconds * full.fs))
    signal = np.vstack([full.lead(lead)[n0:n0 + n] for lead in leads])
    return make_record(signal, list(names), full.fs, "test:ptbxl-143", acquired_at=START, kind=kind,
                       patient_id="MRN-77")
