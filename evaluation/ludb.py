"""LUDB (Lobachevsky University Electrocardiography Database v1.0.1): records, the cardiologists' per-lead annotations,
the annotated span of each lead, one-to-one matching of detections to annotations, the reference T polarity and the
reference TWI derived from the annotations, and the diagnoses in ludb.csv.

Layout accepted (the full copy and the shipped samples alike): a folder holding `data/<id>.{hea,dat,i,ii,...,v6}` and
`ludb.csv`, or any folder above one (e.g. `../shared/data/ludb`, whose copy sits one level deeper).

Held out: ids divisible by 4 are never opened (docs/SPEC.md §7); `record_ids` skips them and `read_record` refuses them.

Reference definitions (stated in docs/EVALUATION.md):
* Annotated span of a lead: first annotation onset .. last annotation offset, and within SPAN_MARGIN_S of some
  annotated wave (a few leads leave a beat unannotated inside the span: a detection there is not a false positive).
* Isoelectric level of a beat: mean of the raw signal over the annotated PR segment (P offset .. QRS onset) of that
  beat, or over the ISO_FALLBACK_S before QRS onset when no P wave is annotated within 400 ms before it.
* Reference T amplitude of a lead: median over its annotated T waves of (raw signal at the annotated T peak minus the
  isoelectric level of the beat the T follows). Polarity: upright > +DEAD_ZONE, inverted < -DEAD_ZONE, otherwise
  "flat" (the dead zone; not scored for polarity accuracy).
* Reference R / S of a lead: median over annotated QRS complexes of the largest positive deflection and the deepest
  negative deflection after it (the deepest point when the R is negligible: QS) vs the isoelectric level.
* Reference TWI (the docs/SPEC.md §4 rule on those references, through engine.criteria so the rule is the engine's own):
  T inverted deeper than 0.1 (units of the record) with a prominent R (R >= 0.3 or R/S > 1), aVR never, III and V1
  only with a mostly positive QRS, in >= 2 contiguous leads.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.record import STANDARD_LEADS, EcgRecord, make_record
from integrations.datasets.wfdb_io import read_annotation, read_signal

ANN_EXT = {"I": "i", "II": "ii", "III": "iii", "aVR": "avr", "aVL": "avl", "aVF": "avf",
           "V1": "v1", "V2": "v2", "V3": "v3", "V4": "v4", "V5": "v5", "V6": "v6"}
DEAD_ZONE = 0.05  # polarity dead zone (mV on calibrated data; relative units on this LUDB copy, see EVALUATION.md)
ISO_FALLBACK_S = 0.02
SPAN_MARGIN_S = 0.2
QRS_TOL_S = 0.075  # an annotated QRS peak within this of a detected QRS (onset..offset) is a match
T_TOL_S = 0.150  # detected vs annotated T peak


def is_held_out(rid: int) -> bool:
    return rid % 4 == 0


def split_of(rid: int) -> str:
    """The colleague's fixed split of the 150 available records: tune = id % 4 == 1, rest = id % 4 in (2, 3)."""
    if is_held_out(rid):
        raise ValueError(f"LUDB record {rid} is held out")
    return "tune" if rid % 4 == 1 else "rest"


def find_ludb(root: Path) -> Path:
    """The folder holding data/ (with .hea files) and ludb.csv, at root or up to three levels below it."""
    root = Path(root)
    below = [sorted(p for p in root.glob(pattern) if p.is_dir()) for pattern in ("*", "*/*", "*/*/*")]
    for cand in [root, *below[0], *below[1], *below[2]]:
        if (cand / "data").is_dir() and any((cand / "data").glob("*.hea")):
            return cand
    raise FileNotFoundError(f"no LUDB folder (data/*.hea) under {root}")


def record_ids(ludb_dir: Path, split: str | None = None, records: list[int] | None = None) -> list[int]:
    """Available, not held-out record ids, optionally restricted to a split ("tune" | "rest" | "all") or a list."""
    have = sorted(int(p.stem) for p in (Path(ludb_dir) / "data").glob("*.hea") if p.stem.isdigit())
    ids = [i for i in have if not is_held_out(i)]
    if records is not None:
        bad = [i for i in records if is_held_out(i)]
        if bad:
            raise ValueError(f"LUDB ids {bad} are held out (divisible by 4) and are never read")
        wanted = set(records)
        ids = [i for i in ids if i in wanted]
    if split not in (None, "all"):
        ids = [i for i in ids if split_of(i) == split]
    return ids


def read_record(ludb_dir: Path, rid: int) -> tuple[EcgRecord, np.ndarray]:
    """The record (canonical lead names) and its raw signal (12, n) float64 in canonical lead order."""
    if is_held_out(rid):
        raise ValueError(f"LUDB record {rid} is held out")
    r = read_signal(Path(ludb_dir) / "data" / str(rid))
    rec = make_record(r.signal, r.names, r.fs, f"ludb:{rid}", patient_id=f"ludb-record-{rid}", source_format="wfdb")
    # the references use wfdb's float64 values (the record keeps float32)
    order = [rec.leads.index(n) for n in STANDARD_LEADS]
    raw = np.asarray(r.signal[order], dtype=np.float64)
    return rec, raw


@dataclass
class Wave:
    kind: str  # "p" | "N" (QRS) | "t"
    on: int
    peak: int
    off: int


def parse_waves(samples, symbols) -> list[Wave]:
    """Group '(' peak ')' triplets into waves; incomplete triplets are dropped."""
    out: list[Wave] = []
    cur: dict | None = None
    for s, sym in zip(samples, symbols, strict=True):
        if sym == "(":
            cur = {"on": int(s)}
        elif sym in ("p", "N", "t") and cur is not None:
            cur.update(kind=sym, peak=int(s))
        elif sym == ")" and cur is not None and "kind" in cur:
            out.append(Wave(cur["kind"], cur["on"], cur["peak"], int(s)))
            cur = None
    return out


def read_waves(ludb_dir: Path, rid: int) -> dict[str, list[Wave]]:
    if is_held_out(rid):
        raise ValueError(f"LUDB record {rid} is held out")
    out = {}
    for lead, ext in ANN_EXT.items():
        try:
            samples, symbols = read_annotation(Path(ludb_dir) / "data" / str(rid), ext)
        except FileNotFoundError:
            continue
        out[lead] = parse_waves(samples, symbols)
    return out


@dataclass
class Span:
    lo: int
    hi: int
    region: np.ndarray  # bool per sample: within SPAN_MARGIN_S of an annotated wave

    def inside(self, i: int | None) -> bool:
        return i is not None and 0 <= i < self.region.size and self.lo <= i <= self.hi and bool(self.region[i])


def lead_span(waves: list[Wave], n: int, fs: float) -> Span | None:
    if not waves:
        return None
    region = np.zeros(n + 1, dtype=bool)
    m = int(round(SPAN_MARGIN_S * fs))
    for w in waves:
        region[max(0, w.on - m):w.off + m] = True
    return Span(min(w.on for w in waves), max(w.off for w in waves), region)


def match(det: np.ndarray, ref: np.ndarray, tol: float, on: np.ndarray | None = None,
          off: np.ndarray | None = None) -> list[tuple[int, int]]:
    """Greedy one-to-one matching, nearest pairs first, of detections to references within `tol` samples.
    With on/off, a detection is the interval [on, off] and the distance is 0 inside it."""
    det, ref = np.asarray(det, dtype=float), np.asarray(ref, dtype=float)
    pairs: list[tuple[int, int]] = []
    if det.size == 0 or ref.size == 0:
        return pairs
    if on is not None and off is not None:
        on, off = np.asarray(on, dtype=float), np.asarray(off, dtype=float)
        dist = np.maximum(0, np.maximum(on[:, None] - ref[None, :], ref[None, :] - off[:, None]))
    else:
        dist = np.abs(det[:, None] - ref[None, :])
    used_d, used_r = set(), set()
    for k in np.argsort(dist, axis=None, kind="stable"):
        i, j = divmod(int(k), ref.size)
        if dist[i, j] > tol:
            break
        if i not in used_d and j not in used_r:
            used_d.add(i)
            used_r.add(j)
            pairs.append((i, j))
    return pairs


def beat_isoelectric(x: np.ndarray, qrs: Wave, ps: list[Wave], fs: float) -> float:
    """Mean of x over the annotated PR segment of the beat whose QRS is `qrs` (fallback: the ISO_FALLBACK_S before
    its onset)."""
    pp = [p for p in ps if qrs.on - 0.4 * fs < p.off <= qrs.on]
    if pp:
        seg = x[pp[-1].off:qrs.on + 1]
    else:
        seg = x[max(0, qrs.on - int(round(ISO_FALLBACK_S * fs))):qrs.on + 1]
    return float(seg.mean())


@dataclass
class LeadReference:
    t_amp: float | None  # median annotated T peak vs isoelectric level
    r_amp: float | None
    s_amp: float | None
    n_t: int

    @property
    def polarity(self) -> str | None:
        return None if self.t_amp is None else polarity_class(self.t_amp)


def polarity_class(amp: float | None, dead_zone: float = DEAD_ZONE) -> str | None:
    if amp is None:
        return None
    return "inverted" if amp < -dead_zone else "upright" if amp > dead_zone else "flat"


def lead_reference(x: np.ndarray, waves: list[Wave], fs: float) -> LeadReference:
    """Reference T amplitude and R/S amplitudes of one lead from its annotations (raw signal x)."""
    qrs = [w for w in waves if w.kind == "N"]
    ps = [w for w in waves if w.kind == "p"]
    ts = [w for w in waves if w.kind == "t"]
    t_amps = []
    for t in ts:
        before = [q for q in qrs if q.on < t.peak]
        if before:
            t_amps.append(x[t.peak] - beat_isoelectric(x, before[-1], ps, fs))
    rs, ss = [], []
    for q in qrs:
        seg = x[q.on:q.off + 1] - beat_isoelectric(x, q, ps, fs)
        if seg.size == 0:
            continue
        r = float(max(seg.max(), 0.0))
        r_at = int(seg.argmax())
        deepest = float(max(-seg.min(), 0.0))
        s = deepest if r < max(0.1, 0.25 * deepest) else float(max(-seg[r_at:].min(), 0.0))
        rs.append(r)
        ss.append(s)
    med = lambda v: float(np.median(v)) if v else None  # noqa: E731
    return LeadReference(t_amp=med(t_amps), r_amp=med(rs), s_amp=med(ss), n_t=len(t_amps))


def reference_twi(refs: dict[str, LeadReference]) -> tuple[list[list[str]], dict[str, bool]]:
    """docs/SPEC.md §4 groups and per-lead qualification from the annotation-derived references (engine.criteria's
    rule)."""
    from engine import criteria
    from engine.measure import LeadMeasure, classify_polarity

    measures, ok = {}, {}
    for lead, ref in refs.items():
        if ref.t_amp is None or ref.r_amp is None:
            continue
        amp = ref.t_amp
        measures[lead] = LeadMeasure(
            t_amp=amp, t_pos=max(amp, 0.0), t_neg=min(amp, 0.0),
            polarity=classify_polarity(amp, max(amp, 0.0), min(amp, 0.0)),
            symmetry=None, t_peak_ms=0.0, t_offset_ms=0.0, st_j60=0.0, r_amp=ref.r_amp, s_amp=ref.s_amp or 0.0,
            qrs_mostly_positive=bool(ref.r_amp > (ref.s_amp or 0.0)), p_amp=0.0, pr_ms=None)
        ok[lead] = True
    groups, verdicts = criteria.find_groups(measures, ok)
    return [list(g.leads) for g in groups], {lead: v.qualifies for lead, v in verdicts.items()}


# --- diagnoses (ludb.csv) ---------------------------------------------------------------------------------------

SECONDARY_LABELS = ("lbbb", "rbbb", "lvh", "pacing")


def _entries(cell: str | None) -> set[str]:
    """ludb.csv cells hold one diagnosis per line."""
    return {line.strip().rstrip(".").lower() for line in (cell or "").splitlines() if line.strip()}


def diagnoses(ludb_dir: Path) -> dict[int, dict[str, bool]]:
    """Secondary-cause labels per available record: LUDB's "Complete left/right bundle branch block" (Conduction
    abnormalities), "Left ventricular hypertrophy" (Hypertrophies), any entry under "Cardiac pacing". Rows of held-out
    ids are dropped as they are read."""
    path = Path(ludb_dir) / "ludb.csv"
    out: dict[int, dict[str, bool]] = {}
    if not path.exists():
        return out
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            try:
                rid = int(str(row["ID"]).strip())
            except ValueError:
                continue
            if is_held_out(rid):
                continue
            cond = _entries(row.get("Conduction abnormalities"))
            hyp = _entries(row.get("Hypertrophies"))
            pace = (row.get("Cardiac pacing") or "").strip()
            out[rid] = {  # whole entries: "Incomplete right bundle branch block" is not a complete one
                "lbbb": "complete left bundle branch block" in cond,
                "rbbb": "complete right bundle branch block" in cond,
                "lvh": "left ventricular hypertrophy" in hyp,
                "pacing": bool(pace),
            }
    return out
