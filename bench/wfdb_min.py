"""A minimal WFDB reader (format 16 only) for machines without the `wfdb` package, e.g. the lent GPU box.

Reads exactly what samples/ holds (LUDB and PTB-XL: one .dat per record, 16-bit little-endian, interleaved) and
refuses anything else. The tests check it against `integrations.datasets.wfdb_io` on every sample record.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.record import EcgRecord, make_record


def read_record(path: str | Path, source_id: str | None = None) -> EcgRecord:
    path = Path(path)
    lines = [ln.strip() for ln in path.with_suffix(".hea").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    head = lines[0].split()
    n_sig, fs, n_samples = int(head[1]), float(head[2].split("/")[0]), int(head[3])
    files, gains, baselines, names = set(), [], [], []
    for line in lines[1:1 + n_sig]:
        parts = line.split()
        files.add(parts[0])
        if parts[1].split("x")[0].split(":")[0].split("+")[0] != "16":
            raise ValueError(f"{path.name}: format {parts[1]} (only 16 is read here)")
        gain_field = parts[2]
        units = gain_field.split("/")[1] if "/" in gain_field else "mV"
        if units.lower() != "mv":
            raise ValueError(f"{path.name}: units {units} (only mV is read here)")
        gain_part = gain_field.split("/")[0]
        adc_zero = int(parts[4]) if len(parts) > 4 else 0
        if "(" in gain_part:
            gain, baseline = float(gain_part.split("(")[0]), int(gain_part.split("(")[1].rstrip(")"))
        else:
            gain, baseline = float(gain_part), adc_zero
        gains.append(gain or 200.0)  # WFDB: gain 0 means the default 200 adu/mV
        baselines.append(baseline)
        names.append(parts[8] if len(parts) > 8 else f"sig{len(names)}")
    if len(files) != 1:
        raise ValueError(f"{path.name}: signals spread over {len(files)} files")
    raw = np.fromfile(path.parent / files.pop(), dtype="<i2")
    raw = raw[: n_samples * n_sig].reshape(-1, n_sig).T.astype(np.float64)
    signal = (raw - np.array(baselines)[:, None]) / np.array(gains)[:, None]
    return make_record(signal.astype(np.float32), names, fs, source_id or f"wfdb:{path.name}", source_format="wfdb")


def sample_records(root: str | Path = "samples") -> list[EcgRecord]:
    """Every record under samples/ (LUDB data/*.hea, PTB-XL records100 and records500), sorted by path."""
    root = Path(root)
    return [read_record(h.with_suffix(""), f"samples:{h.relative_to(root).with_suffix('')}")
            for h in sorted(root.glob("**/*.hea"))]
