"""PTB-XL labels: the database rows of folds 1-9 (fold 10 is held out and skipped as the CSV is read), the SCP codes
(INVT and the secondary causes), and the leads that the free-text `report` names as having inverted T waves, in
English or German (about 30 % of the reports; a few are in other languages and are classed "other").

Report-text reference ("report text says inverted"):
* a statement about the T wave (subject `t`, `t wave(s)`, `t-welle`, `t-veraenderungen` ...) with an inversion word
  (inverted, inversion, neg, negativ, negative, negativierung ...), not negated (no/not/kein/keine/ohne within two
  words before the inversion word or before the `t`); "slightly inverted" and "terminal inversion" count;
* the leads it names: lead lists (`i, avl, v5,6`, `v2-6`, `v1 - v3`, `ii,iii,avf`), lead groups (inferior, lateral,
  inferolateral, anterolateral, anterior, limb, chest/precordial leads, `brustwand`, `throughout`) and `these leads`
  (the previous list). A list takes the most recent descriptor of the sentence (`t waves are low in i and inverted in
  avl` -> aVL only; `neg. t-veraenderungen in i,avl` -> I, aVL) and the most recent subject (`negatives p in iii`
  is about P, not T);
* a T-inversion statement without a lead list we can read (`widespread ... t wave inversion`) makes the record
  positive with unknown leads; such records are left out of the per-lead comparison.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from engine.record import STANDARD_LEADS, EcgRecord
from integrations.datasets.ptbxl import DATABASE_CSV, HELD_OUT_FOLD, read_ptbxl_database
from integrations.datasets.wfdb_io import read_wfdb

SECONDARY_CODES = {"lbbb": "CLBBB", "rbbb": "CRBBB", "lvh": "LVH", "pacing": "PACE", "wpw": "WPW"}

# --- report text ------------------------------------------------------------------------------------------------

_V = r"v\s?[1-6](?:\s*-\s*v?\s?[1-6])?(?:\s*,\s*[1-6](?!\d)(?:\s*-\s*[1-6])?)*"
_ITEM = rf"(?<![a-z0-9])(?:{_V}|avr|avl|avf|iii|ii|i)(?![a-z0-9])"
_LIST = rf"{_ITEM}(?:\s*(?:,|&|/|\band\b|\bund\b|\s)\s*{_ITEM})*"
_GROUPS = {
    "inferolateral": ("II", "III", "aVF", "I", "aVL", "V5", "V6"),
    "anterolateral": ("I", "aVL", "V3", "V4", "V5", "V6"),
    "inferior": ("II", "III", "aVF"),
    "lateral": ("I", "aVL", "V5", "V6"),
    "anterior chest": ("V1", "V2", "V3", "V4"),
    "anterior": ("V1", "V2", "V3", "V4"),
    "limb": ("I", "II", "III", "aVL", "aVF"),
    "standard": ("I", "II", "III", "aVL", "aVF"),
    "chest": ("V1", "V2", "V3", "V4", "V5", "V6"),
    "precordial": ("V1", "V2", "V3", "V4", "V5", "V6"),
}
_ALL_BUT_AVR = tuple(x for x in STANDARD_LEADS if x != "aVR")
_GROUP = (r"(?<![a-z])(?:(?P<grp>" + "|".join(sorted(_GROUPS, key=len, reverse=True)) + r")\s+leads?"
          r"|(?P<these>these\s+leads)|(?P<all>throughout)"
          r"|(?P<chest_de>brustwand(?:ableitungen)?|brustwandableitung)"
          r"|(?P<limb_de>extremitaetenableitungen|extremitätenableitungen))(?![a-z])")
_TOKEN = re.compile(rf"(?P<group>{_GROUP})|(?P<leads>{_LIST})|(?P<word>[a-zäöüß]+)|(?P<stop>[.;:]\s|[.;:]$)")

_SUBJECTS = {"t": "t", "st": "st", "p": "p", "q": "q", "qs": "q", "r": "r", "qrs": "qrs", "u": "u"}
_INVERTED = {"inverted", "inversion", "inversions", "invert", "inverting", "neg", "negativ", "negative", "negatives",
             "negativer", "negativen", "negativem", "negativierung", "negativierungen", "negativiert"}
_DEPRESSED = {"depressed", "depression", "depressions", "senkung", "senkungen", "gesenkt"}
_OTHER = {"flat", "flattened", "flattening", "low", "flach", "flache", "flaches", "flacher", "abgeflacht",
          "abflachung", "biphasic", "biphasisch", "biphasisches", "biphasische", "elevated", "elevation", "hebung",
          "hebungen", "high", "tall", "peaked", "positive", "positiv", "upright", "prominent", "tiny", "notched"}
_NEGATION = {"no", "not", "kein", "keine", "keinen", "ohne", "without", "nicht"}
_SLIGHT = {"slight", "slightly", "leicht", "minimal", "diskret"}
_DE_ABBREV = ("neg", "path", "indiff", "intraventr", "insbes", "unbest", "bzw", "ca", "sek", "pos", "li", "re", "gr")
# language markers, matched on the lower-cased report (PTB-XL writes some umlauts as capitals: lower() folds them)
_DE_MARKERS = {"sinusrhythmus", "sinusbradykardie", "sinustachykardie", "lagetyp", "linkstyp", "rechtstyp",
               "steiltyp", "indifferenztyp", "ekg", "und", "mit", "kein", "keine", "veraenderungen", "veränderungen",
               "pathologisches", "normales", "vorhofflimmern", "senkung", "hebung", "wahrscheinlich", "infarkt",
               "bei", "nicht", "der", "die", "das", "linksschenkelblock", "rechtsschenkelblock", "überdrehter",
               "periphere", "niederspannung", "unauffällig", "vermutlich", "abgeflacht", "flach"}
_SV_MARKERS = {"sinusrytm", "sinustakykardi", "sinusbradykardi", "vänster", "kammarhypertrofi", "förändring",
               "såsom", "skänkelblock", "misstänkt", "el", "axel", "högersidigt", "myokardskada", "förmak", "och",
               "samt", "vid", "ej", "inget", "belastning", "ischemi", "ospecifik", "avvikande"}
_EN_MARKERS = {"atrial", "fibrillation", "trace", "requested", "otherwise", "pathology", "rhythm", "waves", "wave",
               "segments", "segment", "are", "the", "and", "with", "of", "is", "this", "may", "be", "due",
               "consistent", "suggest", "possible", "leads", "normal", "sinus", "ecg", "probably"}


def _expand_v(item: str) -> list[int]:
    """'v4,5,6' -> [4, 5, 6]; 'v2-6' / 'v2 - v6' -> [2..6]; 'v1' -> [1]."""
    nums: list[int] = []
    for part in re.split(r"\s*,\s*", item):
        bounds = [int(d) for d in re.findall(r"[1-6]", part)]
        if "-" in part and len(bounds) == 2 and bounds[0] <= bounds[1]:
            nums += list(range(bounds[0], bounds[1] + 1))
        else:
            nums += bounds
    return nums


def parse_lead_list(text: str) -> list[str]:
    """Leads named in a lead-list string, in canonical names and order."""
    out: set[str] = set()
    for m in re.finditer(_ITEM, text):
        item = re.sub(r"\s+", "", m.group(0)) if not m.group(0).startswith("v") else m.group(0)
        if item.startswith("v"):
            out |= {f"V{k}" for k in _expand_v(item)}
        else:
            out.add({"i": "I", "ii": "II", "iii": "III", "avr": "aVR", "avl": "aVL", "avf": "aVF"}[item])
    return [lead for lead in STANDARD_LEADS if lead in out]


def language(report: str) -> str:
    """"en" | "de" | "sv" (a few PTB-XL reports are Swedish) | "other", by counting marker words."""
    words = re.findall(r"[a-zäöüåÄÖÜÅß]+", report.lower())
    counts = {lang: sum(w in markers for w in words) for lang, markers in
              (("en", _EN_MARKERS), ("de", _DE_MARKERS), ("sv", _SV_MARKERS))}
    best = max(counts, key=counts.get)
    return best if counts[best] > 0 else "other"


@dataclass
class Finding:
    """One kind of statement in a report (T inversion, ST depression) and the leads it names."""

    present: bool = False
    leads: frozenset[str] = frozenset()
    leads_unknown: bool = False  # some statement of this kind named no lead we could read
    slight_leads: frozenset[str] = frozenset()  # of `leads`, those qualified "slight(ly)"/"leicht"
    fragments: list[str] = field(default_factory=list)

    @property
    def leads_named(self) -> bool:
        """The report names the leads (and names them all): usable as a per-lead reference."""
        return self.present and bool(self.leads) and not self.leads_unknown


@dataclass
class ReportTwi:
    says_inverted: bool
    leads: frozenset[str]  # leads named as having inverted T waves
    leads_unknown: bool  # some T-inversion statement named no lead we could read
    language: str
    slight_leads: frozenset[str] = frozenset()
    fragments: list[str] = field(default_factory=list)
    st_depression: Finding = field(default_factory=Finding)  # "st segments are depressed in ...", "st-senkung in ..."

    @property
    def leads_named(self) -> bool:
        """The report names the inverted leads (and names them all): usable as a per-lead reference."""
        return self.says_inverted and bool(self.leads) and not self.leads_unknown


def _normalise(report: str) -> str:
    t = report.lower()
    for a in _DE_ABBREV:
        t = re.sub(rf"(?<![a-z]){a}\.", f"{a} ", t)
    t = t.replace("v.a.", "va ")
    # "throughout chest leads" names the chest leads; "throughout" alone names every lead
    t = re.sub(r"throughout\s+(?=(?:the\s+)?(?:chest|limb|precordial|lateral|inferior|anterior|standard)\b)", "in ", t)
    return t


_TARGETS = {("t", "inv"): "t_inverted", ("st", "dep"): "st_depressed"}


def parse_findings(report: str) -> dict[str, Finding]:
    """T-inversion and ST-depression statements of a PTB-XL report and the leads they name (module docstring)."""
    text = _normalise(report or "")
    acc = {k: {"present": False, "leads": set(), "unknown": False, "slight": set(), "fragments": []}
           for k in _TARGETS.values()}
    # state within the current sentence
    subject: str | None = None  # the wave the sentence is talking about
    desc: str | None = None  # "inv" | "dep" | "other": the most recent descriptor
    desc_slight = negated = False
    pending: str | None = None  # a target statement still without a lead list
    subj_pos = neg_pos = slight_pos = -99
    chunk_start = 0  # word position after the last lead list or sentence end
    last_list: list[str] = []
    pos = 0
    sent_start = 0

    def target() -> str | None:
        return None if negated else _TARGETS.get((subject, desc))

    def end_sentence(at: int) -> None:
        nonlocal pending, subject, desc, negated, desc_slight
        if pending:  # "widespread t wave inversion." / "... t neg" at the end: present, leads not named
            acc[pending].update(present=True, unknown=True)
            acc[pending]["fragments"].append(text[sent_start:at].strip())
        pending, negated, desc_slight = None, False, False
        subject = desc = None

    for m in _TOKEN.finditer(text):
        if m.group("stop"):
            end_sentence(m.start())
            sent_start, chunk_start = m.end(), pos
            continue
        if m.group("group") is not None or m.group("leads") is not None:
            if m.group("leads") is not None:
                named = parse_lead_list(m.group("leads"))
            elif m.group("grp"):
                named = list(_GROUPS[m.group("grp")])
            elif m.group("these"):
                named = list(last_list)
            elif m.group("all"):
                named = list(_ALL_BUT_AVR)
            elif m.group("chest_de"):
                named = list(_GROUPS["chest"])
            else:
                named = list(_GROUPS["limb"])
            k = target()
            if k and named:
                a = acc[k]
                a["present"] = True
                a["leads"].update(named)
                if desc_slight:
                    a["slight"].update(named)
                a["fragments"].append(text[max(sent_start, m.start() - 60):m.end()].strip())
                pending = None
            if named:
                last_list = named
            pos += 1
            chunk_start = pos
            continue
        w = m.group("word")
        if w in _SUBJECTS:
            subject, subj_pos = _SUBJECTS[w], pos
            pending = target()  # German order "neg t in v1" / "... t neg": the descriptor came first
        elif w in _INVERTED or w in _DEPRESSED:
            desc = "inv" if w in _INVERTED else "dep"
            desc_slight = slight_pos >= chunk_start
            negated = (pos - neg_pos <= 2) or (subject is not None and 0 <= subj_pos - neg_pos <= 2)
            pending = target()
        elif w in _OTHER:
            desc, negated, desc_slight = "other", False, False
        elif w in _NEGATION:
            neg_pos = pos
        elif w in _SLIGHT:
            slight_pos = pos
        pos += 1
    end_sentence(len(text))
    return {k: Finding(present=a["present"], leads=frozenset(a["leads"]), leads_unknown=a["unknown"],
                       slight_leads=frozenset(a["slight"]), fragments=a["fragments"]) for k, a in acc.items()}


def parse_report(report: str) -> ReportTwi:
    """Which leads a PTB-XL report says have inverted T waves (and depressed ST segments)."""
    f = parse_findings(report)
    t = f["t_inverted"]
    return ReportTwi(says_inverted=t.present, leads=t.leads, leads_unknown=t.leads_unknown,
                     language=language(report or ""), slight_leads=t.slight_leads, fragments=t.fragments,
                     st_depression=f["st_depressed"])


# --- database ---------------------------------------------------------------------------------------------------

@dataclass
class PtbxlRow:
    """The evaluation's view of a folds 1-9 row of the database (read by integrations.datasets.ptbxl)."""

    ecg_id: int
    patient_id: str
    sex: str | None
    fold: int
    codes: dict[str, float]
    report: str
    filename_lr: str
    filename_hr: str
    recording_date: str = ""  # 'YYYY-MM-DD hh:mm:ss' as PTB-XL writes it ('' when absent)

    @property
    def invt(self) -> bool:
        return "INVT" in self.codes

    def secondary(self) -> dict[str, bool]:
        return {cause: code in self.codes for cause, code in SECONDARY_CODES.items()}


def find_ptbxl(root: Path) -> Path:
    root = Path(root)
    for cand in (root, root / "ptbxl"):
        if (cand / DATABASE_CSV).exists():
            return cand
    raise FileNotFoundError(f"no {DATABASE_CSV} in {root} or {root / 'ptbxl'}")


def load_rows(ptbxl_dir: Path) -> list[PtbxlRow]:
    """Rows of folds 1-9, by ecg_id (fold 10 rows are dropped as they are read)."""
    out = []
    for row in read_ptbxl_database(ptbxl_dir):
        if row.strat_fold == HELD_OUT_FOLD:
            continue
        out.append(PtbxlRow(
            ecg_id=row.ecg_id, patient_id=row.patient, sex=row.sex, fold=row.strat_fold, codes=row.scp_codes,
            report=row.report, filename_lr=row.filename_lr, filename_hr=row.filename_hr,
            recording_date=row.recording_date.isoformat(sep=" ") if row.recording_date else ""))
    return sorted(out, key=lambda r: r.ecg_id)


def signal_path(ptbxl_dir: Path, row: PtbxlRow, rate: int) -> Path | None:
    """The WFDB path (without extension) of the row's signal at 100 or 500 Hz, None when this copy lacks it."""
    name = row.filename_lr if rate == 100 else row.filename_hr
    if not name:
        return None
    p = Path(ptbxl_dir) / name
    return p if p.with_suffix(".hea").exists() else None


def read_record(ptbxl_dir: Path, row: PtbxlRow, rate: int) -> EcgRecord:
    if row.fold == HELD_OUT_FOLD:
        raise ValueError(f"PTB-XL ecg_id {row.ecg_id} is in the held-out fold 10")
    path = signal_path(ptbxl_dir, row, rate)
    if path is None:
        raise FileNotFoundError(f"PTB-XL ecg_id {row.ecg_id} has no {rate} Hz signal here")
    return read_wfdb(path, source_id=f"ptbxl:{row.ecg_id}", patient_id=row.patient_id, sex=row.sex)
