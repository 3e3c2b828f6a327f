"""Chunk decode time: `python -m bench.chunk_decode [--json PATH]` (docs/SPEC.md §11).

The message: 1 s, 4 leads (I, II, III, V), 250 Hz, in the PCD-01 gateway layout (NA counts + rate, resolution and
INOP children), cut from a real PTB-XL recording (samples/, ecg_id 143, 500 Hz taken every second sample). Ten
consecutive seconds are decoded in turn. Compared in the same run with python-hl7 (`hl7.parse`) parsing the same
messages plus numpy conversion of the NA values: the ratio is python-hl7's time over ours. Goal: <= 0.5 ms/message.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from datetime import timedelta
from pathlib import Path

import numpy as np

from engine.record import make_record
from integrations.datasets.wfdb_io import read_wfdb
from integrations.decode import decode_message
from integrations.hl7.encode_chunks import encode_pcd01_chunk
from integrations.senders import SenderMatch, SenderRule, SenderRules

RECORD = Path(__file__).resolve().parents[1] / "samples" / "ptbxl" / "records500" / "00000" / "00143_hr"
RULES = SenderRules(senders=(SenderRule(name="gw", match=SenderMatch(hl7_app="EGATEWAY"), kind="chunk"),))


def messages(n: int = 10) -> list[bytes]:
    full = read_wfdb(RECORD)
    fs = 250.0
    signal = np.vstack([full.lead(lead)[::2] for lead in ("I", "II", "III", "V2")])
    start = full.acquired_at
    out = []
    for k in range(n):
        piece = make_record(signal[:, k * 250:(k + 1) * 250], ["I", "II", "III", "V"], fs, "bench", kind="chunk",
                            acquired_at=start + timedelta(seconds=k) if start else None)
        out.append(encode_pcd01_chunk(piece, control_id=f"B{k}"))
    return out


def ours(msg: bytes) -> np.ndarray:
    return decode_message(msg, "hl7", RULES).segments[0].signal


def python_hl7(msg: bytes) -> list[np.ndarray]:
    import hl7

    parsed = hl7.parse(msg.decode("utf-8"))
    return [np.asarray(str(obx[5]).split("^"), dtype=np.float64) for obx in parsed.segments("OBX")
            if str(obx[2]) == "NA"]


def per_message_ms(fn, msgs: list[bytes], rounds: int) -> dict[str, float]:
    """Median and best over rounds of the mean time per message (one round decodes every message once)."""
    for m in msgs:  # warm-up: imports, caches
        fn(m)
    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for m in msgs:
            fn(m)
        samples.append((time.perf_counter() - t0) / len(msgs) * 1000)
    return {"median_ms": statistics.median(samples), "best_ms": min(samples)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, help="write the figures here")
    ap.add_argument("--rounds", type=int, default=200)
    args = ap.parse_args()
    msgs = messages()
    # the two decoders agree on the values (python-hl7 gives raw counts: times the 0.02 mV resolution)
    theirs = np.vstack(python_hl7(msgs[0])) * 0.02
    assert np.allclose(ours(msgs[0]), theirs, atol=1e-6)
    result = {
        "message": {"leads": 4, "fs_hz": 250, "seconds": 1, "bytes": len(msgs[0]), "messages": len(msgs)},
        "twiwatch": per_message_ms(ours, msgs, args.rounds),
        "python_hl7_plus_numpy": per_message_ms(python_hl7, msgs, args.rounds),
        "goal_ms": 0.5,
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    result["ratio_python_hl7_over_twiwatch"] = (result["python_hl7_plus_numpy"]["median_ms"]
                                                / result["twiwatch"]["median_ms"])
    result["meets_goal"] = result["twiwatch"]["median_ms"] <= result["goal_ms"]
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
