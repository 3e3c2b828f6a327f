"""Write samples/feeds/: one small message per monitor-feed layout, cut from a real shipped recording (PTB-XL ecg_id
143, CC BY 4.0), for `twiwatch decode` examples in the README and for operators trying a feed.

    .venv/bin/python scripts/make_feed_samples.py
"""
from __future__ import annotations

import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from engine.record import make_record
from integrations.datasets.wfdb_io import read_wfdb
from integrations.fhir.sample_array import encode_sample_array
from integrations.hl7.encode_chunks import encode_pcd01_chunk, encode_w01

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "samples" / "feeds"
START = datetime(2026, 12, 2, 9, 30, 0, tzinfo=timezone(timedelta(hours=1)))


def piece(seconds: float, leads: tuple[str, ...], names: tuple[str, ...], offset_s: float = 0.0):
    full = read_wfdb(ROOT / "samples" / "ptbxl" / "records500" / "00000" / "00143_hr")
    n0, n = int(offset_s * full.fs), int(round(seconds * full.fs))
    signal = np.vstack([full.lead(lead)[n0:n0 + n] for lead in leads])
    return make_record(signal, list(names), full.fs, "sample:ptbxl-143", acquired_at=START + timedelta(
        seconds=offset_s), kind="chunk", patient_id="SAMPLE-MRN-1")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    monitor = piece(1.0, ("I", "II", "III", "V2"), ("I", "II", "III", "V"))
    (OUT / "pcd01-gateway-chunk.hl7").write_bytes(encode_pcd01_chunk(monitor, control_id="SAMPLE-1")
                                                  .replace(b"\r", b"\n"))
    unitless = encode_pcd01_chunk(monitor, control_id="SAMPLE-2", resolution_mv=None, sending_app="BEDSIDE",
                                  sending_facility="CCU")
    (OUT / "pcd01-chunk-needs-sender-rule.hl7").write_bytes(unitless.replace(b"\r", b"\n"))
    first, second = piece(2.0, ("I", "II"), ("I", "II")), piece(2.0, ("I", "II"), ("I", "II"), offset_s=3.0)
    (OUT / "w01-multiplexed-with-gap.hl7").write_bytes(encode_w01([first, second], control_id="SAMPLE-3")
                                                       .replace(b"\r", b"\n"))
    (OUT / "pocd-sample-array.json").write_bytes(encode_sample_array(piece(1.0, ("I", "II", "III"),
                                                                           ("I", "II", "III"))))
    shutil.copy(ROOT / "tests" / "integrations" / "data" / "Observation-ECGSampleArrayObservation.xml",
                OUT / "pocd-ig-example.xml")
    print(f"wrote {len(list(OUT.glob('*.*')))} files to {OUT}")


if __name__ == "__main__":
    main()
