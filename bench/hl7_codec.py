"""Quick timing check of the HL7 codec: `python -m bench.hl7_codec [WFDB record path]`.

Prints best-of-N encode/decode times for a 12-lead message (no assertions: timings belong in docs, not tests).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from integrations.datasets.wfdb_io import read_wfdb
from integrations.hl7.decode import decode_oru, parse_header
from integrations.hl7.encode import encode_oru

DEFAULT = Path(__file__).resolve().parents[1] / "samples" / "ludb" / "data" / "1"


def best_ms(fn, repeat: int = 20) -> float:
    fn()
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best * 1000


def main(path: str | None = None) -> None:
    record = read_wfdb(path or DEFAULT, source_id="bench", patient_id="bench")
    for unit in ("uV", "mV"):
        msg = encode_oru(record, control_id="BENCH", unit=unit)
        out = decode_oru(msg, sender=None)
        assert np.abs(out.signal - record.signal).max() <= 0.0005 + 1e-6
        # the lambdas run inside this iteration, so binding the loop variables by default is only for the linter
        encode_ms = best_ms(lambda unit=unit: encode_oru(record, control_id="B", unit=unit))
        decode_ms = best_ms(lambda msg=msg: decode_oru(msg, sender=None))
        header_us = best_ms(lambda msg=msg: parse_header(msg)) * 1000
        print(f"{len(record.leads)} leads x {record.n_samples} samples @ {record.fs:g} Hz, unit {unit}, "
              f"{len(msg) / 1024:.0f} KiB: encode {encode_ms:.1f} ms, decode {decode_ms:.2f} ms, "
              f"parse_header {header_us:.0f} µs")

if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
