"""Per-sender configuration (docs/SPEC.md §11): whether a sender streams chunks, and its scale when messages carry none.

Loaded from JSON (TWIWATCH_SENDERS holds the text or a path; the caller reads the file). The shape:

    {"senders": [
      {"name": "mindray-icu", "match": {"hl7_app": "EGATEWAY", "hl7_facility": "ICU"},
       "kind": "chunk", "bed_component": 2},
      {"name": "captor", "match": {"hl7_app": "DATACAPTOR"}, "kind": "chunk",
       "mv_per_count": 0.001, "sample_rate_hz": 250},
      {"name": "fhir-gw", "match": {"fhir_source": "urn:example:gateway"}, "kind": "chunk"}
    ]}

A bare list of rules is accepted too. Unknown keys are refused: a typo in a scale rule must not pass silently.
There is no global default scale: a message without one needs its sender's rule, else it is a dead letter.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class SenderMatch(BaseModel):
    """Which messages a rule applies to. Every key given must match (exact, case-sensitive); at least one key."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    hl7_app: str | None = Field(None, description="MSH-3 sending application (as sent, components included)")
    hl7_facility: str | None = Field(None, description="MSH-4 sending facility")
    fhir_source: str | None = Field(None, description="FHIR meta.source")
    device: str | None = Field(None, description="device id: HL7 OBX-18, FHIR device reference or identifier")

    @model_validator(mode="after")
    def _not_empty(self) -> SenderMatch:
        if not any((self.hl7_app, self.hl7_facility, self.fhir_source, self.device)):
            raise ValueError("a sender match needs at least one of hl7_app, hl7_facility, fhir_source, device")
        return self

    def specificity(self) -> int:
        # A device is narrower than a sender; app and facility together narrower than either alone.
        return 4 * (self.device is not None) + (self.hl7_app is not None) + (self.hl7_facility is not None) + (
            self.fhir_source is not None)


class SenderRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(min_length=1)
    match: SenderMatch
    kind: Literal["strip", "chunk"] = "strip"
    mv_per_count: float | None = Field(None, gt=0, description="mV per raw count when the message states no scale")
    sample_rate_hz: float | None = Field(None, gt=0, description="rate for signals whose message gives none")
    bed_component: int = Field(3, ge=1, le=10, description="PV1-3 component that names the bed (3: point of "
                                                          "care^room^bed; 2 for a ward^bed layout)")
    invalid_value: float | None = Field(None, description="raw sample value that marks an invalid sample")


class SenderRules(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    senders: tuple[SenderRule, ...] = ()

    @model_validator(mode="after")
    def _distinct(self) -> SenderRules:
        seen: dict[SenderMatch, str] = {}
        for rule in self.senders:
            if rule.match in seen:
                raise ValueError(f"rules {seen[rule.match]!r} and {rule.name!r} have the same match")
            seen[rule.match] = rule.name
        return self


NO_RULES = SenderRules()


def parse_sender_rules(text: str) -> SenderRules:
    """SenderRules from JSON text ('' or whitespace: no rules). Raises ValueError with the reason."""
    if not text.strip():
        return NO_RULES
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"sender rules are not JSON (line {e.lineno}, column {e.colno})") from None
    if isinstance(doc, list):
        doc = {"senders": doc}
    try:
        return SenderRules.model_validate(doc)
    except ValidationError as e:
        raise ValueError(f"sender rules are invalid: {e}") from None


def find_sender_rule(
    rules: SenderRules,
    *,
    hl7_app: str | None = None,
    hl7_facility: str | None = None,
    fhir_source: str | None = None,
    devices: Sequence[str] = (),
) -> SenderRule | None:
    """The rule for one message: every key of its match equals the message's value; the most specific wins
    (device over sender, app and facility over either), the first listed among equals."""
    given = {"hl7_app": hl7_app, "hl7_facility": hl7_facility, "fhir_source": fhir_source}
    best: SenderRule | None = None
    for rule in rules.senders:
        m = rule.match
        if any(getattr(m, key) is not None and getattr(m, key) != value for key, value in given.items()):
            continue
        if m.device is not None and m.device not in devices:
            continue
        if best is None or m.specificity() > best.match.specificity():
            best = rule
    return best
