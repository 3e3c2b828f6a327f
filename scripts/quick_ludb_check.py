"""Quick self-check of the engine's delineation against LUDB's cardiologist annotations (not the full evaluation).

    .venv/bin/python scripts/quick_ludb_check.py [--split tune|rest|all] [--data DIR]

Splits of the 150 available LUDB records (ids divisible by 4 are held out and absent): tune = id % 4 == 1 (the
only records thresholds were tuned on), rest = id % 4 in (2, 3).
Scoring, per lead, inside that lead's annotated span (first to last annotation; LUDB marks the middle ~7-8 s) and
within 200 ms of some annotated wave (a few leads leave beats unannotated inside the span: not our false positives):
* QRS: annotated 'N' inside our detected QRS onset..offset or within 75 ms of it, one-to-one; sensitivity/PPV/F1;
* T detection: our per-beat T peak vs annotated 't' within 150 ms; sensitivity/PPV;
* T peak / T offset: median |error| (ms) over matched T waves;
* T polarity: reference per lead = median over its annotated T waves of (raw signal at the annotated T peak minus
  the isoelectric level = mean of the raw signal over the annotated PR segment (P offset..QRS onset) of that beat, or
  the 20 ms before QRS onset when no P is annotated). Leads with |reference| < 0.05 mV (dead zone) are not scored.
  Predicted = sign of the engine's t_amplitude_mv for the lead (median beat). "inverted" = reference < -0.05 mV.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import wfdb

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from engine.analyze import analyze  # noqa: E402
from engine.record import make_record  # noqa: E402

DEFAULT = Path(__file__).resolve().parents[2] / "shared/data/ludb/lobachevsky-university-electrocardiography-database-1.0.1/data"
ANN = ["i", "ii", "iii", "avr", "avl", "avf", "v1", "v2", "v3", "v4", "v5", "v6"]
DEAD_ZONE_MV = 0.05


def waves(ann) -> list[dict]:
    """Group '(' peak ')' triplets into waves: {'kind': 'p'|'N'|'t', 'on', 'peak', 'off'}."""
    out, cur = [], None
    for s, sym in zip(ann.sample, ann.symbol):
        if sym == "(":
            cur = {"on": int(s)}
        elif sym in ("p", "N", "t") and cur is not None:
            cur.update(kind=sym, peak=int(s))
        elif sym == ")" and cur is not None and "kind" in cur:
            cur["off"] = int(s)
            out.append(cur)
            cur = None
    return out


def match(det: np.ndarray, ref: np.ndarray, tol: float, on=None, off=None) -> list[tuple[int, int]]:
    """Greedy one-to-one matching by distance (to an interval [on, off] when given)."""
    pairs, used_d, used_r = [], set(), set()
    if det.size and ref.size:
        if on is not None:
            dist = np.maximum(0, np.maximum(on[:, None] - ref[None, :], ref[None, :] - off[:, None]))
        else:
            dist = np.abs(det[:, None] - ref[None, :])
        for k in np.argsort(dist, axis=None):
            i, j = divmod(int(k), ref.size)
            if dist[i, j] > tol:
                break
            if i not in used_d and j not in used_r:
                used_d.add(i), used_r.add(j), pairs.append((i, j))
    return pairs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--split", default="all", choices=["tune", "rest", "all"])
    ap.add_argument("--data", default=str(DEFAULT))
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    ids = [i for i in range(1, 201) if i % 4 and (args.split == "all" or (i % 4 == 1) == (args.split == "tune"))]
    c = dict(qtp=0, qfp=0, qfn=0, ttp=0, tfp=0, tfn=0)
    pk_err, off_err, pol_ok, pol_n, inv_ok, inv_n, times = [], [], 0, 0, 0, 0, []
    wrong = []
    for rid in ids:
        path = f"{args.data}/{rid}"
        r = wfdb.rdrecord(path)
        raw = r.p_signal.T
        rec = make_record(raw, r.sig_name, r.fs, f"ludb/{rid}")
        t0 = time.perf_counter()
        a = analyze(rec)
        times.append(time.perf_counter() - t0)
        fs = r.fs
        for li, ext in enumerate(ANN):
            lead = rec.leads[li]
            lr = a.leads[lead]
            w = waves(wfdb.rdann(path, ext))
            if not w:
                continue
            lo, hi = min(x["on"] for x in w), max(x["off"] for x in w)
            region = np.zeros(raw.shape[1] + 1, dtype=bool)  # annotated stretches (LUDB leaves a few gaps)
            for x in w:
                region[max(0, x["on"] - int(0.2 * fs)):x["off"] + int(0.2 * fs)] = True
            inside = lambda i: lo <= i <= hi and region[i]  # noqa: E731
            qref = np.array([x["peak"] for x in w if x["kind"] == "N"])
            qb = [b for b in lr.beats if inside(b.r_peak)]
            qdet = np.array([b.r_peak for b in qb])
            # distance of an annotated R to our QRS: 0 inside our onset..offset, else to the nearer edge
            qon, qoff = np.array([b.qrs_onset for b in qb]), np.array([b.qrs_offset for b in qb])
            m = match(qdet, qref, 0.075 * fs, on=qon, off=qoff)
            c["qtp"] += len(m); c["qfp"] += qdet.size - len(m); c["qfn"] += qref.size - len(m)
            if args.verbose and (qdet.size != len(m) or qref.size != len(m)):
                wrong.append(f"QRS {rid}/{lead}: ref {qref.tolist()} det {qdet.tolist()}")
            tw = [x for x in w if x["kind"] == "t"]
            tref = np.array([x["peak"] for x in tw])
            tb = [b for b in lr.beats if b.t_peak is not None and inside(b.t_peak)]
            tdet = np.array([b.t_peak for b in tb])
            m = match(tdet, tref, 0.150 * fs)
            c["ttp"] += len(m); c["tfp"] += tdet.size - len(m); c["tfn"] += tref.size - len(m)
            if args.verbose and (tdet.size != len(m) or tref.size != len(m)):
                wrong.append(f"T {rid}/{lead}: ref {tref.tolist()} det {tdet.tolist()}")
            for i, j in m:
                pk_err.append(abs(tdet[i] - tref[j]) * 1000 / fs)
                if tb[i].t_offset is not None:
                    off_err.append(abs(tb[i].t_offset - tw[j]["off"]) * 1000 / fs)
                    if args.verbose and off_err[-1] > 100:
                        wrong.append(f"Toff {rid}/{lead}: ref {tw[j]['off']} ours {tb[i].t_offset} (peak {tref[j]} ours {tdet[i]})")
            # reference polarity
            amps = []
            qrs = [x for x in w if x["kind"] == "N"]
            ps = [x for x in w if x["kind"] == "p"]
            for t in tw:
                before = [q for q in qrs if q["on"] < t["peak"]]
                if not before:
                    continue
                q = before[-1]
                pp = [p for p in ps if q["on"] - 0.4 * fs < p["off"] <= q["on"]]
                seg = raw[li, pp[-1]["off"]:q["on"] + 1] if pp else raw[li, max(0, q["on"] - int(0.02 * fs)):q["on"] + 1]
                amps.append(raw[li, t["peak"]] - seg.mean())
            if not amps or lr.t_amplitude_mv is None:
                continue
            ref_amp = float(np.median(amps))
            if abs(ref_amp) < DEAD_ZONE_MV:
                continue
            ok = np.sign(ref_amp) == np.sign(lr.t_amplitude_mv)
            pol_n += 1; pol_ok += ok
            if ref_amp < 0:
                inv_n += 1; inv_ok += ok
            if not ok:
                wrong.append(f"{rid}/{lead}: ref {ref_amp:+.3f} ours {lr.t_amplitude_mv:+.3f} ({lr.t_polarity})")
    f = lambda tp, fp, fn: (tp / max(1, tp + fn), tp / max(1, tp + fp))  # noqa: E731
    qs, qp = f(c["qtp"], c["qfp"], c["qfn"])
    ts, tp = f(c["ttp"], c["tfp"], c["tfn"])
    print(f"split={args.split} records={len(ids)}")
    print(f"QRS   sens {qs:.4f} PPV {qp:.4f} F1 {2 * qs * qp / max(1e-9, qs + qp):.4f}  (lead-beats {c['qtp'] + c['qfn']})")
    print(f"T     sens {ts:.4f} PPV {tp:.4f}  (annotated T {c['ttp'] + c['tfn']})")
    print(f"T peak   median |err| {np.median(pk_err):.1f} ms  (p90 {np.percentile(pk_err, 90):.0f} ms)")
    print(f"T offset median |err| {np.median(off_err):.1f} ms  (p90 {np.percentile(off_err, 90):.0f} ms)")
    print(f"T polarity accuracy {pol_ok / max(1, pol_n):.4f} ({pol_ok}/{pol_n} leads outside the {DEAD_ZONE_MV} mV dead zone)")
    print(f"  on inverted T     {inv_ok / max(1, inv_n):.4f} ({inv_ok}/{inv_n})")
    print(f"time per record: median {1000 * np.median(times):.1f} ms, max {1000 * np.max(times):.1f} ms")
    if args.verbose:
        print("\n".join(wrong))


if __name__ == "__main__":
    main()
