"""Extract checkable claims from reasoning text: T waves, ST segments, QRS width, rhythm and rate, per lead.

Pattern-based and deliberately narrow: a claim is extracted only when its wording is recognised, so each one can
be checked against a measurement; whatever is not recognised (axis, P waves, Q waves, voltage, QT, diagnoses
such as ischemia or LVH) is not extracted at all. How text is read:
* sentences split at . ! ? ; clauses at ";" and but/whereas/while/however/although; leads never attach and
  negation never reaches across a clause boundary;
* leads attach to the finding they belong to: a lead mention after a preposition ("TWI in V4-V6") goes to the
  finding before it, one in subject position ("V4-V6 show TWI", "Lead I shows an upright T wave") to the finding
  after it (leadtext.py); a T or ST claim with no lead mention in its clause is a whole-ECG claim;
* negation: a cue (no, not, without, absence of, negative for, rules out, ...) among the few words before the
  finding or inside its phrase ("T waves are not inverted"), or "... is absent / is not seen" after it; it carries
  over lists joined by "or"/"nor"/commas ("no ST elevation or depression"). "Cannot rule out X" is a hedge, not a
  negation;
* identical claims (same kind, assertion, negation, leads, value) repeated in several steps are kept once, with
  every place they came from in `sources`.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from engine.reasoner.leadtext import find_lead_spans
from engine.reasoner.parse import ParsedReasoning

I = re.IGNORECASE  # noqa: E741 - short alias keeps the pattern table readable
_T = r"T(?:[\s-]*waves?)"
_TW = r"\bT[\s-]*waves?\b"
_LEADWORD = r"(?:aV[RLF]|V[1-6]|III|II|I)\b"
# Up to eight words between subject and adjective ("T waves in I and aVL are low"); "and"/"or" only inside a
# lead list, so "T waves are upright, and the P waves inverted" does not read as an inverted T; never across
# another finding word ("T wave inversion in V4 with flattened ..." is two findings).
_FINDING_WORD = r"(?:with|without|inversions?|inverted|negative|upright|positive|flat\w*|biphasic|low|ST|QRS|[PQRSU])\b"
_GAP = rf"(?:\s+(?!(?:and|but|or)\b(?!\s+{_LEADWORD})|{_FINDING_WORD})[\w'\-]+,?){{0,8}}?\s+"
# Between "ST" and "elevated"/"depressed": a few words, never another finding or a joiner ("ST depression with
# elevated troponin" is not an ST elevation).
_ST_GAP = r"(?:\s+(?!(?:elevation|depression|elevated|depressed|and|with|or|but)\b)[\w']+){0,3}?"
_QRS = r"\bQRS(?:[\s-]+complex(?:es)?)?(?:\s+(?:duration|width|interval))?"
_BBB = r"bundle[\s-]+branch\s+block(?![\s-]*like)"


@dataclass
class Claim:
    text: str  # the clause it was read from (shown to reviewers)
    kind: str  # "t_wave" | "st" | "qrs" | "rhythm" | "rate"
    leads: list[str]
    # t_wave: inverted|flat|biphasic|upright; st: elevation|depression|deviation ("isoelectric" is read as a
    # negated deviation); qrs: wide|narrow|duration|lbbb|rbbb|bbb|incomplete-rbbb|incomplete-lbbb|ivcd;
    # rhythm: sinus|sinus-arrhythmia|atrial-fibrillation|atrial-flutter|paced|irregular|regular;
    # rate: value|atrial-value|tachycardia|bradycardia|normal
    assertion: str
    negated: bool = False
    value: float | None = None  # ms (QRS) or bpm (rate)
    value_high: float | None = None  # upper end of a stated range ("60-70 bpm")
    hedged: bool = False  # "possible", "cannot rule out", "suggestive of"
    sources: list[str] = field(default_factory=list)  # "step 4", "narrative", "answer"
    verdict: str = "unverifiable"  # set by crosscheck: supported | contradicted | unverifiable
    evidence: list[str] = field(default_factory=list)


@dataclass
class _Hit:
    start: int
    end: int
    kind: str
    assertion: str
    value: float | None = None
    value_high: float | None = None
    negated_inside: bool = False


def _num(m: re.Match, name: str) -> float | None:
    try:
        return float(m.group(name)) if m.group(name) else None
    except (IndexError, ValueError):
        return None


def _qrs_value(m: re.Match) -> tuple[float | None, None]:
    v = _num(m, "v")
    if v is None:
        return None, None
    if m.group("unit").lower().startswith("s"):
        v *= 1000.0
    return (v, None) if 40 <= v <= 300 else (None, None)


def _rate_value(m: re.Match) -> tuple[float | None, float | None]:
    lo, hi = _num(m, "v"), _num(m, "v2")
    if lo is None or not 15 <= lo <= 350:
        return None, None
    return lo, hi if hi is not None and lo <= hi <= 350 else None


_RATE_UNIT = r"\s*(?:bpm|beats?\s*(?:per|/)\s*min(?:ute)?|/\s*min)\b"
_ABOUT = r"(?:(?:of|is|was|at|approximately|about|around|roughly|near|~|\u2248)\s*)*"
_RANGE = r"(?P<v>\d{2,3})(?:\s*(?:-|\u2013|to)\s*(?P<v2>\d{2,3}))?"
_QRS_UNIT = r"ms|msec|milliseconds?|s|sec|seconds?"
_QRS_VERB = r"(?:\s+(?:is|are|was|were|appears?|remains?))?(?:\s+\w+)?\s+"
_QRS_FILLER = (r"(?:\s+(?:is|are|was|were|of|at|measures|measuring|measured|approximately|about|around|roughly|"
               r"prolonged|wide|widened|narrow|normal|~|=|:|\())*\s*")


def _p(kind: str, assertion: str, *alternatives: str, reader: Callable | None = None,
       flags: int = I) -> tuple[str, str, re.Pattern, Callable | None]:
    return kind, assertion, re.compile("|".join(alternatives), flags), reader


# (kind, assertion, regex, value reader). Order does not matter: overlapping matches keep the longest.
_PATTERNS: list[tuple[str, str, re.Pattern, Callable | None]] = [
    _p("t_wave", "inverted", rf"{_TW}[\s-]*(?:inversions?|negativity)\b", r"\bT[\s-]+inversions?\b", r"\bTWIs?\b",
       rf"\b(?:inverted|negative)\s+{_T}?\b", rf"{_TW}{_GAP}(?:inverted|negative)\b"),
    _p("t_wave", "flat", rf"\b(?:flat(?:tened)?|low(?:[\s-]+(?:amplitude|voltage))?)\s+{_T}?\b",
       rf"{_TW}\s+flattening\b", rf"{_TW}{_GAP}(?:flat(?:tened)?|low)\b"),
    _p("t_wave", "biphasic", rf"\bbiphasic\s+{_T}?\b", rf"{_TW}{_GAP}biphasic\b"),
    _p("t_wave", "upright", rf"\b(?:upright|positive)\s+{_T}?\b", rf"{_TW}{_GAP}(?:upright|positive)\b"),
    _p("st", "elevation", r"\bST[\s-]*(?:segments?\s+)?elevations?\b", r"\belevat(?:ed|ion\s+of\s+the)\s+ST\b",
       rf"\bST(?:[\s-]*segments?)?{_ST_GAP}\s+elevated\b"),
    _p("st", "elevation", r"\bSTE\b", flags=0),
    _p("st", "depression", r"\bST[\s-]*(?:segments?\s+)?depressions?\b", r"\bdepress(?:ed|ion\s+of\s+the)\s+ST\b",
       rf"\bST(?:[\s-]*segments?)?{_ST_GAP}\s+depressed\b"),
    _p("st", "deviation", r"\bST[\s-]*(?:segments?\s+)?(?:deviations?|changes?|shifts?)\b"),
    _p("st", "isoelectric", r"\bST[\s-]*segments?(?:\s+[\w']+){0,2}?\s+isoelectric\b", r"\bisoelectric\s+ST\b"),
    _p("qrs", "duration", rf"{_QRS}{_QRS_FILLER}(?P<v>\d+(?:\.\d+)?)\s*(?P<unit>{_QRS_UNIT})\b", reader=_qrs_value),
    _p("qrs", "wide", r"\b(?:wide|widened|broad|prolonged)\s+(?:paced\s+)?QRS\b",
       rf"{_QRS}{_QRS_VERB}(?:wide|widened|broad|prolonged)\b", r"\bQRS\s+(?:widening|prolongation)\b"),
    _p("qrs", "narrow", r"\bnarrow\s+QRS\b", rf"{_QRS}{_QRS_VERB}narrow\b", r"\bnormal\s+QRS\s+(?:duration|width)\b",
       r"\bQRS\s+(?:duration|width)\s+(?:is\s+)?normal\b"),
    _p("qrs", "incomplete-rbbb", rf"\bincomplete\s+(?:right\s+{_BBB}|RBBB\b)", r"\bIRBBB\b"),
    _p("qrs", "incomplete-lbbb", rf"\bincomplete\s+(?:left\s+{_BBB}|LBBB\b)", r"\bILBBB\b"),
    _p("qrs", "rbbb", rf"\b(?:complete\s+)?right\s+{_BBB}", r"\bC?RBBB\b(?![\s-]*like)"),
    _p("qrs", "lbbb", rf"\b(?:complete\s+)?left\s+{_BBB}", r"\bC?LBBB\b(?![\s-]*like)"),
    _p("qrs", "bbb", rf"\b{_BBB}", r"\bBBB\b"),
    _p("qrs", "ivcd", r"\bintraventricular\s+conduction\s+(?:delay|defect)\b", r"\bIVCD\b"),
    _p("rhythm", "sinus", r"\b(?:normal\s+)?sinus\s+(?:rhythm|tachycardia|bradycardia)\b", r"\brhythm\s+is\s+sinus\b"),
    _p("rhythm", "sinus-arrhythmia", r"\bsinus\s+arrhythmia\b"),
    _p("rhythm", "atrial-fibrillation", r"\batrial\s+fibrillation\b", r"\bA[\s-]?fib\b"),
    _p("rhythm", "atrial-fibrillation", r"\bAF\b", flags=0),
    _p("rhythm", "atrial-flutter", r"\batrial\s+flutter\b"),
    _p("rhythm", "paced", r"\b(?:(?:ventricular(?:ly)?|atrial(?:ly)?|AV|dual[\s-]chamber)\s+)?paced\b",
       r"\bpacing\s+spikes?\b", r"\bpacemaker\b", r"\bventricular\s+pacing\b"),
    _p("rhythm", "irregular", r"\birregularly\s+irregular\b", r"\birregular\s+(?:rhythm|R[\s-]?R)\b",
       r"\b(?:rhythm|R[\s-]?R\s+intervals?)\s+(?:is|are)\s+irregular\b"),
    _p("rhythm", "regular", r"\bregular\s+(?:rhythm|R[\s-]?R(?:\s+intervals?)?)\b",
       r"\b(?:rhythm|R[\s-]?R\s+intervals?)\s+(?:is|are)\s+regular\b"),
    _p("rate", "value", rf"\b(?:(?:heart|ventricular|mean\s+ventricular|average)\s+)?rate\s+{_ABOUT}{_RANGE}"
       rf"{_RATE_UNIT}", reader=_rate_value),
    _p("rate", "value", rf"(?<![\d.]){_RANGE}{_RATE_UNIT}", reader=_rate_value),
    # The atrial rate, said outright or as the rate of P, flutter or fibrillatory waves: not the measured
    # ventricular rate ("flutter waves at approximately 300 bpm" with 2:1 conduction is a ventricular 150).
    _p("rate", "atrial-value", rf"\batrial\s+rate\s+{_ABOUT}{_RANGE}{_RATE_UNIT}", reader=_rate_value),
    _p("rate", "atrial-value",
       rf"\b(?:flutter|fibrillatory|[PF])[\s-]*waves?\b(?:(?!ventricular|heart|QRS)[^.;,]){{0,30}}?"
       rf"(?<![\d.]){_RANGE}{_RATE_UNIT}", reader=_rate_value),
    _p("rate", "tachycardia", r"(?<!ventricular\s)(?<!supraventricular\s)\btachycardi(?:a|c)\b"),
    _p("rate", "bradycardia", r"\bbradycardi(?:a|c)\b"),
    _p("rate", "normal", r"\bnormal\s+(?:heart\s+|ventricular\s+)?rate\b", r"\brate\s+is\s+(?:within\s+)?normal\b"),
]
_NEG_CUE = re.compile(r"\b(?:no|not|without|absence\s+of|absent|negative\s+for|free\s+of|lack\s+of|nor|neither|"
                      r"rules?\s+out|ruled\s+out|ruling\s+out|excludes?|excluded|excluding)\b", I)
_HEDGE_BEFORE_CUE = re.compile(r"\b(?:cannot|can't|can\s+not|unable\s+to|does\s+not|doesn't|do\s+not)\s*$", I)
_HEDGE = re.compile(r"\b(?:possible|possibly|probable|probably|suggest(?:s|ive|ing)?|suspect(?:ed)?|consider|"
                    r"borderline|may|might|cannot\s+(?:be\s+)?(?:rule[ds]?\s+out|exclude[ds]?)|likely)\b", I)
_NEG_INSIDE = re.compile(r"\b(?:not|no|neither)\b", I)
_NEG_AFTER = re.compile(r"^[^.;]{0,60}?\b(?:is|are|was|were)\s+(?:not\s+(?:seen|present|observed|noted|identified|"
                        r"evident|demonstrated)|absent)\b", I)
_EXCEPT = re.compile(r"^[^.;]{0,20}?\b(?:except|other\s+than|apart\s+from|save\s+for)\s+(?:for\s+|in\s+)?"
                     r"(?:the\s+)?(?:leads?\s+)?(?:aV[RLF]|V[1-6]|III|II|I|inferior|lateral|anterior|septal|"
                     r"precordial|limb)\b", I)
_CUE_BARRIER = re.compile(r",|\band\b", I)
_OR_JOINER = re.compile(r"\s*,?\s*(?:or|nor)\s*", I)
_OR_NEXT = re.compile(r"\s*,?\s*(?:or|nor)\b", I)
_CARRY = re.compile(r"\W*(?:,|or|nor|and/or|/)?\s*(?:any\s+)?\W*", I)
_BARE_FINDING = re.compile(r"\b(?:reciprocal\s+)?(?P<w>elevation|depression|inversion|flattening)s?\b", I)
_FLUTTER_RATE = re.compile(r"\batrial\s+flutter\b(?![^.;]*\b(?:ventricular|conduction|block|heart)\b)[^.;]*$",
                           I)
_OF_OTHER = re.compile(r"\s+of\s+(?:the\s+)?(?:[PQRSU][\s-]*waves?|PR|QRS|J[\s-]*point)\b", I)
_ELLIPSIS_ASSERTION = {"elevation": "elevation", "depression": "depression", "inversion": "inverted",
                       "flattening": "flat"}
_T_ADJ = re.compile(r"\b(?P<w>inverted|upright|flat(?:tened)?|biphasic)\b", I)
_OTHER_SUBJECT = re.compile(r"\b(?:[PQRSU][\s-]*waves?|QRS|PR|QTc?|axis|voltage|progression|complex(?:es)?|"
                            r"deflections?|Q\s+waves|pattern|morphology|R'|rSR'?)\b", I)
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z(\"'])|\n+")
_CLAUSE = re.compile(r";|\s*\b(?:but|whereas|while|however|although)\b", I)
_JOIN = re.compile(r"\s*(?:,|and|or|&|/|with)\s*", I)
LEAD_KINDS = ("t_wave", "st")


def extract_claims(parsed: ParsedReasoning) -> list[Claim]:
    """All claims in the steps, the narrative and the answer labels, de-duplicated."""
    chunks: list[tuple[str, str]] = [(f"step {s.number}", s.text) for s in parsed.steps]
    if not parsed.steps and parsed.think:
        chunks.append(("reasoning", parsed.think))
    if parsed.narrative:
        chunks.append(("narrative", parsed.narrative))
    chunks += [("answer", label) for label in parsed.labels]
    merged: dict[tuple, Claim] = {}
    for source, text in chunks:
        for claim in claims_in_text(text, source):
            key = (claim.kind, claim.assertion, claim.negated, tuple(claim.leads), claim.value, claim.value_high)
            if key in merged:
                if source not in merged[key].sources:
                    merged[key].sources.append(source)
            else:
                merged[key] = claim
    return list(merged.values())


def claims_in_text(text: str, source: str = "") -> list[Claim]:
    out: list[Claim] = []
    for sentence in _SENTENCE.split(text):
        for clause in _CLAUSE.split(sentence):
            if clause and clause.strip():
                out += _clause_claims(clause.strip(), source)
    return out


def _clause_claims(clause: str, source: str) -> list[Claim]:
    hits = _find_hits(clause)
    if not hits:
        return []
    negated = _negations(clause, hits)
    leads = _attach_leads(clause, hits, negated)
    hedged = bool(_HEDGE.search(clause))
    text = clause if len(clause) <= 240 else clause[:237] + "..."
    claims = []
    for i, h in enumerate(hits):
        assertion, neg = h.assertion, negated[i]
        if assertion == "isoelectric":  # "ST segments are isoelectric" = no ST deviation
            assertion, neg = "deviation", not neg
        claims.append(Claim(text=text, kind=h.kind, leads=leads[i] if h.kind in LEAD_KINDS else [],
                            assertion=assertion, negated=neg, value=h.value, value_high=h.value_high,
                            hedged=hedged, sources=[source] if source else []))
    return claims


def _find_hits(clause: str) -> list[_Hit]:
    found: list[_Hit] = []
    for kind, assertion, rx, reader in _PATTERNS:
        for m in rx.finditer(clause):
            value = high = None
            if reader is not None:
                value, high = reader(m)
                if value is None:
                    continue
            found.append(_Hit(m.start(), m.end(), kind, assertion, value, high,
                              bool(_NEG_INSIDE.search(m.group(0)))))
    found.sort(key=lambda h: (h.start, -(h.end - h.start)))
    hits: list[_Hit] = []
    for h in found:  # longest match wins; "sinus tachycardia" also says the rate is fast
        if any(h.start < k.end and k.start < h.end for k in hits):
            continue
        hits.append(h)
        word = clause[h.start:h.end].lower()
        if h.kind == "rhythm" and h.assertion == "sinus" and ("tachycardi" in word or "bradycardi" in word):
            hits.append(_Hit(h.start, h.end, "rate", "tachycardia" if "tachy" in word else "bradycardia"))
    hits += _ellipses(clause, hits) + _t_adjectives(clause, hits)
    for h in hits:
        if h.kind == "rate" and h.assertion == "value" and _FLUTTER_RATE.search(clause[max(0, h.start - 60):h.start]):
            h.assertion = "atrial-value"  # "atrial flutter at 300 bpm with 2:1 conduction": the flutter rate
    return sorted(hits, key=lambda h: h.start)


def _ellipses(clause: str, hits: list[_Hit]) -> list[_Hit]:
    """A bare finding word that shares an earlier finding's subject: 'ST elevation or depression', 'ST elevation in
    V2 with reciprocal depression in II', 'T wave flattening in I, inversion in V4'. Each is a finding of its own,
    so that its leads attach to it; a word after another subject ('P wave inversion', 'PR depression') is not."""
    extra: list[_Hit] = []
    for m in _BARE_FINDING.finditer(clause):
        if any(k.start < m.end() and m.start() < k.end for k in hits + extra):
            continue
        kind = "st" if m.group("w").lower() in ("elevation", "depression") else "t_wave"
        before = [k for k in hits + extra if k.end <= m.start()]
        if not any(k.kind == kind for k in before):
            continue
        prev_end = max(k.end for k in before)
        if _OTHER_SUBJECT.search(clause[prev_end:m.start()]) or _OF_OTHER.match(clause, m.end()):
            continue  # "P wave inversion", "inversion of the P wave"
        extra.append(_Hit(m.start("w"), m.end(), kind, _ELLIPSIS_ASSERTION[m.group("w").lower()]))
    return extra


def _t_adjectives(clause: str, hits: list[_Hit]) -> list[_Hit]:
    """'T waves are upright in I and II and inverted in aVR': later adjectives keep the T-wave subject."""
    extra: list[_Hit] = []
    t_hits = [h for h in hits if h.kind == "t_wave"]
    if not t_hits:
        return extra
    for m in _T_ADJ.finditer(clause, t_hits[0].end):
        if any(k.start <= m.start() < k.end for k in hits + extra):
            continue
        prev_end = max(k.end for k in hits + extra if k.end <= m.start())
        if _OTHER_SUBJECT.search(clause[prev_end:m.start()]):
            continue
        word = m.group("w").lower()
        assertion = "flat" if word.startswith("flat") else word
        prev = max((k for k in hits + extra if k.end <= m.start()), key=lambda k: k.end)
        if prev.kind == "t_wave" and prev.assertion == assertion and _JOIN.fullmatch(clause[prev.end:m.start()]):
            continue  # "low and flat": one finding
        extra.append(_Hit(m.start(), m.end(), "t_wave", assertion))
    return extra


def _negations(clause: str, hits: list[_Hit]) -> list[bool]:
    out: list[bool] = []
    for i, h in enumerate(hits):
        gap_start = hits[i - 1].end if i else 0
        gap = clause[gap_start:h.start]
        following = clause[h.end:hits[i + 1].start] if i + 1 < len(hits) else clause[h.end:]
        window = " ".join(_cue_reach(gap, following).split()[-6:])
        neg = h.negated_inside
        cues = list(_NEG_CUE.finditer(window))
        cue = cues[-1] if cues else None  # the cue nearest the finding decides
        if cue is not None:
            hedge = cue.group(0).lower().startswith(("rule", "ruled", "ruling", "exclud")) and \
                _HEDGE_BEFORE_CUE.search(window[:cue.start()])
            neg = neg or not hedge
        if i and not neg and out[i - 1] and _CARRY.fullmatch(gap) and (
                _OR_JOINER.search(gap) or _OR_NEXT.match(following)):
            neg = True  # "no ST elevation or depression", "no A, B or C"; not "no ST elevation, TWI in V1"
        if _NEG_AFTER.search(following):
            neg = True
        if _EXCEPT.search(following):
            # "no T wave inversion except in aVR and V1": asserted for the leads it names; "T waves upright except
            # in aVR": denied for them
            neg = not neg
        out.append(neg)
    return out


def _cue_reach(gap: str, following: str) -> str:
    """The part of the text before a finding that a negation cue in it still governs. A comma, "and" or another
    subject ends a cue's reach ("no Q waves and T waves are inverted", "without U waves, T waves are inverted"),
    unless the finding is an item of an "or" list the cue opened ("no Q waves or T wave inversion", "no Q waves,
    T wave inversion, or ST depression")."""
    barriers = [m.end() for rx in (_CUE_BARRIER, _OTHER_SUBJECT) for m in rx.finditer(gap)]
    cut = max(barriers, default=0)
    if not cut:
        return gap
    in_or_list = _OR_JOINER.fullmatch(gap[cut:]) or _OR_NEXT.match(following)
    return gap if in_or_list else gap[cut:]


def _attach_leads(clause: str, hits: list[_Hit], negated: list[bool]) -> list[list[str]]:
    chosen_spans: list[list] = [[] for _ in hits]
    forward: list[tuple] = []
    targets = [i for i, h in enumerate(hits) if h.kind in LEAD_KINDS]
    if not targets:
        return [[] for _ in hits]
    for span in find_lead_spans(clause):
        inside = [i for i in targets if hits[i].start <= span.start < hits[i].end]
        before = [i for i in targets if hits[i].end <= span.start]
        after = [i for i in targets if hits[i].start >= span.end]
        prev = before[-1] if before else None
        last_end = max((h.end for h in hits if h.end <= span.start), default=0)
        if not inside and span.after_preposition and _OTHER_SUBJECT.search(clause[last_end:span.start]):
            continue  # "Q waves in III and aVF, T wave inversion in V2": III and aVF belong to the Q waves
        if prev is not None and _OTHER_SUBJECT.search(clause[hits[prev].end:span.start]):
            prev = None  # a lead mention past another subject never goes back to the finding before it
        nxt = after[0] if after else None
        if inside:
            choice = inside[0]  # "T waves in I and aVL are low"
        else:
            choice = prev if span.after_preposition and prev is not None else nxt if nxt is not None else prev
        if choice is None:
            continue
        chosen = [choice]
        # "inverted T waves and ST depression in V5": a finding list shares the lead mention that follows it.
        # Not across a change of negation: "no ST elevation, T wave inversion in V5" says nothing of ST in V5.
        while chosen[0] > 0 and span.after_preposition and not inside and hits[chosen[0] - 1].kind in LEAD_KINDS \
                and negated[chosen[0] - 1] == negated[chosen[0]] \
                and _JOIN.fullmatch(clause[hits[chosen[0] - 1].end:hits[chosen[0]].start]):
            chosen.insert(0, chosen[0] - 1)
        for i in chosen:
            chosen_spans[i].append(span)
        if choice == nxt and not inside:
            forward.append((span, choice))
    # "In the inferior leads the ST segments are isoelectric and the T waves are upright": a lead mention that
    # opens a clause covers the findings after it that name no leads of their own, up to the next mention.
    spans_at = sorted(s.start for s in find_lead_spans(clause))
    for span, first in forward:
        limit = next((p for p in spans_at if p > span.start), len(clause))
        for i in targets:
            if i > first and hits[i].start < limit and not chosen_spans[i]:
                chosen_spans[i].append(span)
    out: list[list[str]] = []
    for spans in chosen_spans:
        # "In the lateral leads, T waves are inverted in V4-V6": the explicit list is what the claim is about.
        explicit = [s for s in spans if s.group is None]
        leads: list[str] = []
        for span in explicit or spans:
            leads += [n for n in span.leads if n not in leads]
        out.append(leads)
    return out
