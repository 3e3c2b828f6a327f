"""Claims read from reasoning text and checked against real analyses.

PTB-XL 468 (100 Hz; INVT in V4-V5 per PTB-XL): the engine measures sinus rhythm ~69 bpm, QRS 76 ms, T negative in
V5, biphasic with a deep inverted lobe in V4, flat in V6 and aVL, upright in V1-V3 and II. Voltages are used only
on PTB-XL. LUDB 10 (complete RBBB) is used for QRS width, the RBBB check and rhythm only (the LUDB copy has every
lead scaled to 1 mV peak-to-peak, so its amplitudes are relative).
"""
from __future__ import annotations

import copy

import pytest

from engine.analyze import analyze
from engine.reasoner.claims import claims_in_text, extract_claims
from engine.reasoner.crosscheck import check_claims, cross_check, describe
from engine.reasoner.parse import parse_reasoning
from integrations.reasoner.standin import load_outputs


@pytest.fixture(scope="module")
def a468(recordings):
    rec = next(r for r in recordings if (r.dataset, r.record_id) == ("ptbxl", "468")).load()
    a = analyze(rec)
    # what the tests below rely on (if the engine's measures move, these say so first)
    assert a.rhythm == "sinus" and 60 < a.heart_rate_bpm < 75 and a.qrs_duration_ms < 110
    assert a.leads["V5"].t_polarity == "negative" and a.leads["V2"].t_amplitude_mv > 0.2
    assert [g.leads for g in a.twi] == [["V4", "V5"]]
    return a


@pytest.fixture(scope="module")
def a_ludb10(recordings):
    rec = next(r for r in recordings if (r.dataset, r.record_id) == ("ludb", "10")).load()
    a = analyze(rec)
    assert a.qrs_duration_ms >= 120 and next(f for f in a.secondary if f.cause == "rbbb").present
    return a


def one(text: str, analysis):
    claims = check_claims(claims_in_text(text, "test"), analysis).claims
    assert len(claims) == 1, [describe(c) for c in claims]
    return claims[0]


def verdicts(text: str, analysis) -> dict[str, str]:
    return {describe(c): c.verdict for c in check_claims(claims_in_text(text, "test"), analysis).claims}


# --- lead mentions -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, leads", [
    ("T wave inversion in V1-V4.", ["V1", "V2", "V3", "V4"]),
    ("T waves are inverted in v4,5,6.", ["V4", "V5", "V6"]),
    ("ST elevation in II, III and aVF.", ["II", "III", "aVF"]),
    ("ST elevation in the inferior leads.", ["II", "III", "aVF"]),
    ("T wave inversion in the lateral leads.", ["I", "aVL", "V5", "V6"]),
    ("Anterior T wave inversion.", ["V1", "V2", "V3", "V4"]),
    ("Flat T waves across the precordial leads.", ["V1", "V2", "V3", "V4", "V5", "V6"]),
    ("Leads I and aVL show an inverted T wave.", ["I", "aVL"]),
    ("In the lateral precordial leads V4-V6 the T waves are inverted.", ["V4", "V5", "V6"]),
    ("T waves in V4, V5 and V6 are inverted.", ["V4", "V5", "V6"]),
])
def test_lead_mentions(text, leads):
    (claim,) = claims_in_text(text)
    assert claim.leads == leads


def test_leads_go_to_the_right_finding():
    got = {(c.kind, c.assertion): c.leads for c in claims_in_text(
        "ST depression in V5 and V6 with T wave inversion in I and aVL, and Q waves in III.")}
    assert got == {("st", "depression"): ["V5", "V6"], ("t_wave", "inverted"): ["I", "aVL"]}
    got = {(c.kind, c.assertion): c.leads for c in claims_in_text(
        "T waves are upright in I and II and inverted in aVR.")}
    assert got == {("t_wave", "upright"): ["I", "II"], ("t_wave", "inverted"): ["aVR"]}
    (st,) = claims_in_text("Mobitz II block with ST elevation in III.")
    assert st.leads == ["III"]  # "II" of Mobitz II is not a lead


def _read(text: str) -> set[tuple]:
    return {(c.kind, c.assertion, c.negated, tuple(c.leads)) for c in claims_in_text(text)}


@pytest.mark.parametrize("text,want", [
    # a depth after a V list is not another lead
    ("ST depression in V5 and V6, 1 mm.", {("st", "depression", False, ("V5", "V6"))}),
    ("ST depression in V5 and V6, 1-2 mm.", {("st", "depression", False, ("V5", "V6"))}),
    ("T wave inversion in V5, V6, 2 mm deep, and in I and aVL.",
     {("t_wave", "inverted", False, ("V5", "V6", "I", "aVL"))}),
    ("T wave inversion in V4,5,6.", {("t_wave", "inverted", False, ("V4", "V5", "V6"))}),
    # a negation of another subject does not reach past a comma or "and"
    ("There are no pathological Q waves and T waves are inverted in V4-V6.",
     {("t_wave", "inverted", False, ("V4", "V5", "V6"))}),
    ("No pathological Q waves, T wave inversion in V4-V6.", {("t_wave", "inverted", False, ("V4", "V5", "V6"))}),
    ("Without prominent U waves, T waves are inverted in V5.", {("t_wave", "inverted", False, ("V5",))}),
    ("ST elevation is not seen in V1-V3, T wave inversion in V5.",
     {("st", "elevation", True, ("V1", "V2", "V3")), ("t_wave", "inverted", False, ("V5",))}),
    # ... but it does over an "or" list it opens
    ("No pathological Q waves or T wave inversion.", {("t_wave", "inverted", True, ())}),
    ("There is no ST elevation, depression or T wave inversion.",
     {("st", "elevation", True, ()), ("st", "depression", True, ()), ("t_wave", "inverted", True, ())}),
    # a bare second finding is a finding of its own, with its own leads
    ("ST elevation in V2 with reciprocal depression in II, III and aVF.",
     {("st", "elevation", False, ("V2",)), ("st", "depression", False, ("II", "III", "aVF"))}),
    ("T wave flattening in I and aVL, inversion in V4-V5.",
     {("t_wave", "flat", False, ("I", "aVL")), ("t_wave", "inverted", False, ("V4", "V5"))}),
    ("P wave inversion in II with T wave flattening in V6.", {("t_wave", "flat", False, ("V6",))}),
    ("T waves inverted in V2 with 2 mm depth, ST depressed 1 mm in V5.",
     {("t_wave", "inverted", False, ("V2",)), ("st", "depression", False, ("V5",))}),
    ("No T wave inversion except in aVR and V1.", {("t_wave", "inverted", False, ("aVR", "V1"))}),
    ("No ST elevation except for the known LBBB-related changes.",
     {("st", "elevation", True, ()), ("qrs", "lbbb", False, ())}),
    ("ST depression with elevated troponin.", {("st", "depression", False, ())}),
    ("ST elevation and depressed ejection fraction.", {("st", "elevation", False, ())}),
    ("Without ST elevation, T waves are inverted in V2.",
     {("st", "elevation", True, ()), ("t_wave", "inverted", False, ("V2",))}),
    ("No ST elevation, T wave inversion in V5 and V6 suggestive of strain or ischemia.",
     {("st", "elevation", True, ()), ("t_wave", "inverted", False, ("V5", "V6"))}),
    ("No ST deviation, T wave inversion in III or aVF.",
     {("st", "deviation", True, ()), ("t_wave", "inverted", False, ("III", "aVF"))}),
    ("ST segments are neither elevated nor depressed.", {("st", "elevation", True, ())}),
    ("T waves are upright except in aVR and V1.", {("t_wave", "upright", True, ("aVR", "V1"))}),
    ("No Q waves, ST changes, or T wave inversion.", {("st", "deviation", True, ()), ("t_wave", "inverted", True, ())}),
    ("T wave inversion in III, and inversion of the P wave in II.", {("t_wave", "inverted", False, ("III",))}),
    # leads named for Q waves stay with the Q waves
    ("Q waves in III and aVF, T wave inversion in V2.", {("t_wave", "inverted", False, ("V2",))}),
])
def test_reviewed_phrasings(text, want):
    assert _read(text) == want


def test_atrial_fibrillation_keeps_its_rhythm_claim_beside_its_rate():
    got = {(c.kind, c.assertion) for c in claims_in_text("Atrial fibrillation at 140 bpm with ST depression in V5.")}
    assert {("rhythm", "atrial-fibrillation"), ("rate", "value"), ("st", "depression")} == got


@pytest.mark.parametrize("text,assertion,value", [
    ("Flutter waves at approximately 300 bpm with 2:1 conduction.", "atrial-value", 300),
    ("The P wave rate is 300 bpm.", "atrial-value", 300),
    ("Atrial fibrillation with a ventricular rate of 110 bpm.", "value", 110),
    ("Heart rate 75 bpm.", "value", 75),
    ("Atrial fibrillation at 140 bpm.", "value", 140),  # the rhythm stays a claim of its own (test above)
    ("Sinus rhythm with P waves at 72 bpm.", "atrial-value", 72),
    ("Atrial flutter at 300 bpm with 2:1 conduction.", "atrial-value", 300),
    ("Atrial flutter with 2:1 conduction, ventricular rate 150 bpm.", "value", 150),
])
def test_atrial_rates_are_not_the_ventricular_rate(text, assertion, value):
    (rate,) = [c for c in claims_in_text(text) if c.kind == "rate"]
    assert (rate.assertion, rate.value) == (assertion, value)


# --- T waves and ST on PTB-XL 468 ----------------------------------------------------------------------------

def test_supported_contradicted_unverifiable_t_claims(a468):
    c = one("T waves are inverted in V5.", a468)
    assert c.verdict == "supported" and c.evidence == ["V5: T -0.12 mV (negative)"]
    c = one("T wave inversion in V2 and V3.", a468)
    assert c.verdict == "contradicted" and all("positive" in e for e in c.evidence)
    c = one("T wave inversion in V4-V6.", a468)  # V6 is flat: one lead against makes the claim contradicted
    assert c.verdict == "contradicted" and c.evidence[0].startswith("V6: T +0.03 mV (flat)")
    assert one("Flat T waves in aVL.", a468).verdict == "supported"
    assert one("Upright T waves in II.", a468).verdict == "supported"
    assert one("T waves are upright in V5.", a468).verdict == "contradicted"
    assert one("Biphasic T wave in V2.", a468).verdict == "contradicted"


def test_lead_not_analysable_or_absent_is_unverifiable(a468):
    bad = copy.deepcopy(a468)
    bad.leads["V5"].quality, bad.leads["V5"].t_amplitude_mv = "not-analysable", None
    del bad.leads["V6"]
    c = one("T wave inversion in V5 and V6.", bad)
    assert c.verdict == "unverifiable" and c.evidence == ["V5: not analysable", "V6: absent"]
    c = one("T wave inversion in V4, V5 and V6.", bad)  # V4 still measurable: its support carries the claim
    assert c.verdict == "supported" and "V5: not analysable" in c.evidence


def test_negations(a468):
    assert one("No T wave inversion in V2.", a468).verdict == "supported"
    assert one("T waves are not inverted in V5.", a468).verdict == "contradicted"
    c = one("There is no T wave inversion.", a468)  # the engine found a TWI group meeting the criteria
    assert c.negated and c.verdict == "contradicted" and "TWI group V4, V5" in c.evidence[0]
    assert one("Without ST depression in V5.", a468).verdict == "supported"
    got = verdicts("No ST elevation or depression in II, III and aVF.", a468)
    assert got == {"no ST elevation in II, III, aVF": "supported", "no ST depression in II, III, aVF": "supported"}
    c = one("ST elevation in V1-V3 is not seen.", a468)
    assert c.negated
    c = one("Cannot rule out ST elevation in V2.", a468)
    assert not c.negated and c.hedged


def test_st_thresholds(a468):
    # V2/V3 ST about +0.18 mV at J+60: elevated, but under the 0.2 mV precordial threshold ECG-R1 itself uses
    assert one("ST elevation in V2 and V3.", a468).verdict == "supported"
    assert one("No ST elevation in V2.", a468).verdict == "unverifiable"
    assert one("ST depression in V2.", a468).verdict == "contradicted"
    assert one("The ST segments are isoelectric in II, III and aVF.", a468).verdict == "supported"


def test_whole_ecg_claims(a468):
    c = one("T wave inversion.", a468)
    assert c.leads == [] and c.verdict == "supported" and c.evidence[0].startswith("TWI group")
    assert one("No ST elevation.", a468).verdict == "supported"


# --- QRS, rhythm, rate -----------------------------------------------------------------------------------------

def test_qrs_claims_on_ludb10_rbbb(a_ludb10):
    assert one("The QRS duration is 130 ms.", a_ludb10).verdict == "supported"  # measured 124, +-20 ms
    assert one("QRS duration 0.08 s.", a_ludb10).verdict == "contradicted"
    assert one("The QRS complex is wide.", a_ludb10).verdict == "supported"
    assert one("Narrow QRS complexes.", a_ludb10).verdict == "contradicted"
    c = one("Complete right bundle branch block.", a_ludb10)
    assert c.verdict == "supported" and c.evidence[0].startswith("rbbb: present")
    assert one("No RBBB.", a_ludb10).verdict == "contradicted"
    assert one("Left bundle branch block.", a_ludb10).verdict == "contradicted"
    assert one("Incomplete right bundle branch block.", a_ludb10).verdict == "contradicted"  # complete width
    assert one("Sinus rhythm.", a_ludb10).verdict == "supported"


def test_qrs_rhythm_rate_on_ptbxl468(a468):
    assert one("The QRS is narrow.", a468).verdict == "supported"
    assert one("Incomplete RBBB.", a468).verdict == "unverifiable"  # morphology not measured
    assert one("The heart rate is 72 bpm.", a468).verdict == "supported"  # measured ~69, tolerance 10 bpm
    assert one("Ventricular rate of 110 beats per minute.", a468).verdict == "contradicted"
    assert one("Tachycardia.", a468).verdict == "contradicted"
    assert one("No bradycardia.", a468).verdict == "supported"
    got = verdicts("Sinus bradycardia.", a468)
    assert got == {"sinus rhythm": "supported", "bradycardia": "unverifiable"}  # 69 bpm: inside the 10 bpm band
    assert one("Atrial fibrillation.", a468).verdict == "contradicted"
    assert one("There is no atrial fibrillation.", a468).verdict == "supported"
    assert one("Atrial flutter.", a468).verdict == "unverifiable"
    assert one("The rhythm is irregularly irregular.", a468).verdict == "contradicted"
    assert one("Paced rhythm.", a468).verdict == "unverifiable"  # 100 Hz: pacing spikes not detectable


# --- whole outputs: every claim classified -----------------------------------------------------------------------

@pytest.mark.parametrize("output_id", ["lateral-twi", "rbbb", "normal", "afib-lbbb", "paced", "truncated"])
def test_every_claim_gets_a_verdict(a468, output_id):
    out = load_outputs()[output_id]
    cc = cross_check(parse_reasoning(out["text"], out["finish_reason"]), a468)
    assert cc.claims and all(c.verdict in ("supported", "contradicted", "unverifiable") for c in cc.claims)
    assert all(c.evidence for c in cc.claims)
    kinds = ("supported", "contradicted", "unverifiable")
    assert cc.counts["total"] == len(cc.claims) == sum(cc.counts[v] for v in kinds)
    checked = cc.counts["supported"] + cc.counts["contradicted"]
    assert cc.contradiction_rate == (round(cc.counts["contradicted"] / checked, 4) if checked else None)


def test_lateral_twi_output_against_ptbxl468(a468):
    out = load_outputs()["lateral-twi"]
    cc = cross_check(parse_reasoning(out["text"]), a468)
    by = {describe(c): c for c in cc.claims}
    assert by["T inverted in V4, V5, V6"].verdict == "contradicted"  # V6 measured flat
    assert by["T flat in I, aVL"].verdict == "supported"
    assert by["sinus rhythm"].sources == ["step 1", "step 6", "narrative", "answer"]  # repeated: counted once
    lines = cc.lines()
    assert lines[0].startswith(f"{len(cc.claims)} claims checked")
    assert any(line.startswith("CONTRADICTED: T inverted in V4, V5, V6 (V6: T +0.03 mV (flat)") for line in lines)


def test_no_claims_no_rate(a468):
    cc = cross_check(parse_reasoning("<think>nothing measurable here</think><answer>LVH</answer>"), a468)
    assert cc.claims == [] and cc.counts["total"] == 0 and cc.contradiction_rate is None
    assert extract_claims(parse_reasoning("")) == []


def test_extraction_and_checking_never_raise_on_odd_text(a468):
    import random

    rng = random.Random(11)
    words = ["T wave", "inversion", "inverted", "in", "V1-V4", "II", "III", "and", "aVF", "no", "not", "ST",
             "elevation", "depression", "QRS", "130 ms", "wide", "narrow", "rate", "72 bpm", "sinus", "rhythm", "AF",
             ",", ";", ".", "or", "with", "leads", "inferior", "lateral", "V4,5,6", "flat", "upright", "biphasic", "is",
             "absent", "-"]
    for _ in range(500):
        text = " ".join(rng.choice(words) for _ in range(rng.randint(0, 25)))
        cc = check_claims(claims_in_text(text, "fuzz"), a468)
        assert all(c.verdict in ("supported", "contradicted", "unverifiable") and c.evidence for c in cc.claims)
