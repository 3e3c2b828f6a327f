"""Every secondary cause the engine reports has a phrase in the FHIR narrative (integrations/fhir/narrative.py), so a
report never shows a raw cause name such as "rbbb-incomplete"."""
from __future__ import annotations

from engine.analyze import analyze
from integrations.fhir.narrative import SECONDARY_LABELS, conclusion_text
from tests.support.records import SAMPLES, load_wfdb


def test_every_engine_cause_has_a_label_and_incomplete_rbbb_reads_as_such():
    a = analyze(load_wfdb(SAMPLES / "ood" / "JS20052", "ood/JS20052"))  # QRS 118 ms: incomplete RBBB pattern
    causes = {f.cause for f in a.secondary}
    assert causes <= set(SECONDARY_LABELS), causes - set(SECONDARY_LABELS)
    assert {"rbbb-incomplete", "lbbb-incomplete", "ivcd", "lvh"} <= causes
    text = conclusion_text(a, "final", None)
    assert "incomplete RBBB pattern (QRS 110-119 ms)" in text
    assert "rbbb-incomplete" not in text
