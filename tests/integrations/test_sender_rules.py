"""Sender rules (integrations/senders.py): parsing, refusal of typos, and which rule a message gets."""
from __future__ import annotations

import pytest

from integrations.senders import find_sender_rule, parse_sender_rules

TEXT = """{"senders": [
  {"name": "gw", "match": {"hl7_app": "EGATEWAY"}, "kind": "chunk", "mv_per_count": 0.001},
  {"name": "gw-icu", "match": {"hl7_app": "EGATEWAY", "hl7_facility": "ICU"}, "kind": "chunk", "bed_component": 2},
  {"name": "bed7", "match": {"device": "0011223344556677"}, "kind": "strip", "mv_per_count": 0.0025},
  {"name": "fhir", "match": {"fhir_source": "urn:gw"}, "kind": "chunk", "sample_rate_hz": 250}
]}"""


def test_most_specific_rule_wins():
    rules = parse_sender_rules(TEXT)
    assert find_sender_rule(rules, hl7_app="EGATEWAY", hl7_facility="ER").name == "gw"
    assert find_sender_rule(rules, hl7_app="EGATEWAY", hl7_facility="ICU").bed_component == 2
    assert find_sender_rule(rules, hl7_app="EGATEWAY", hl7_facility="ICU",
                            devices=["0011223344556677"]).mv_per_count == 0.0025
    assert find_sender_rule(rules, fhir_source="urn:gw").sample_rate_hz == 250
    assert find_sender_rule(rules, hl7_app="OTHER") is None


def test_bare_list_and_empty_text():
    assert parse_sender_rules('[{"name": "a", "match": {"hl7_app": "A"}}]').senders[0].kind == "strip"
    assert parse_sender_rules("  ").senders == ()


@pytest.mark.parametrize("text, phrase", [
    ('[{"name": "a", "match": {"hl7_app": "A"}, "mv_per_cnt": 0.02}]', "mv_per_cnt"),  # a typo is refused
    ('[{"name": "a", "match": {}}]', "at least one"),
    ('[{"name": "a", "match": {"hl7_app": "A"}, "mv_per_count": 0}]', "greater than 0"),
    ('[{"name": "a", "match": {"hl7_app": "A"}, "kind": "stream"}]', "kind"),
    ('[{"name": "a", "match": {"hl7_app": "A"}}, {"name": "b", "match": {"hl7_app": "A"}}]', "same match"),
    ("{not json", "not JSON"),
])
def test_invalid_rules_are_refused_with_the_reason(text, phrase):
    with pytest.raises(ValueError, match=phrase):
        parse_sender_rules(text)
