"""The blind label-check set (evaluation/blind_review.py): what goes in, what the reviewer sees, how it is scored.
Drawn from the two CinC records in samples/ood with engine results written here."""
from __future__ import annotations

import json

from evaluation.blind_review import choose, make_set, reviewer_twi, score
from tests.support.records import SAMPLES


def _twi(name, triage, negative=True, label=False):
    return {"name": name, "triage": triage, "twi_negative": negative, "twi_label": label}


def _sec(name, label, engine, qrs=100.0):
    return {"name": name, "labels": {"rbbb": label}, "secondary": {"rbbb": engine}, "qrs_ms": qrs}


def test_disagreements_come_with_as_many_agreements_chosen_by_name_hash():
    twi = [_twi("A", "ischemic-pattern"), _twi("B", "no-twi"), _twi("C", "no-twi"), _twi("D", "no-twi", False, True)]
    sec = [_sec("A", False, False), _sec("B", True, False), _sec("C", True, True), _sec("D", False, False)]
    why = choose(twi, sec, "salt")
    assert why["A"][0] == "twi-disagree" and "twi-disagree" in why["D"]  # a false call and a missed label
    assert sum("twi-agree" in w for w in why.values()) == 2
    assert "rbbb-disagree" in why["B"] and sum("rbbb-agree" in w for w in why.values()) == 1
    assert choose(twi, sec, "salt") == why  # the same set every time


def test_reviewer_twi_needs_two_contiguous_leads_and_never_counts_avr():
    assert reviewer_twi(["V2", "V3"]) and reviewer_twi(["aVL", "I"]) and reviewer_twi(["II", "aVF"])
    assert not reviewer_twi(["I", "II"]) and not reviewer_twi(["aVR", "aVL"]) and not reviewer_twi(["V1", "V3"])


def test_the_reviewer_sees_anonymous_drawings_and_the_scorer_joins_them_back(tmp_path):
    twi = [_twi("A0023", "ischemic-pattern"), _twi("JS20052", "no-twi")]
    sec = [_sec("A0023", False, False), _sec("JS20052", True, True, 130.0)]
    tj, sj = tmp_path / "twi.json", tmp_path / "sec.json"
    tj.write_text(json.dumps({"cinc": {"per_record": twi}}))
    sj.write_text(json.dumps({"cinc": {"per_record": sec}}))
    cases, key = tmp_path / "cases", tmp_path / "key" / "key.json"
    assert make_set(SAMPLES / "ood", tj, sj, cases, key) == {"cases": 2}
    shown = sorted(p.name for p in cases.iterdir())
    assert shown == ["case-01-chest.png", "case-01-limb.png", "case-01-overview.png", "case-02-chest.png",
                     "case-02-limb.png", "case-02-overview.png", "judgments.template.json"]
    assert "A0023" not in (cases / "judgments.template.json").read_text()
    judged = json.loads((cases / "judgments.template.json").read_text())
    k = json.loads(key.read_text())["cases"]
    a = next(c for c, v in k.items() if v["record"] == "A0023")
    judged[a]["twi_leads"] = []  # the reviewer sees no inversion where the engine called one
    (tmp_path / "j.json").write_text(json.dumps(judged))
    out = score(key, tmp_path / "j.json")
    assert out["twi"]["disagreements_judged"] == 1 and out["twi"]["reviewer_sides_with_label"] == 1
    assert out["twi"]["agreements_judged"] == 1
