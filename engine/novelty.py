"""New vs prior TWI (docs/SPEC.md §4: no formal standard; compared with the most recent prior ECG).

A current group is
  * "persistent" when the most recent prior already had TWI there: it listed a group sharing >= 2 of its leads, or
    >= 2 contiguous leads of the group were already inverted (polarity negative/biphasic with the T at or below
    -(0.1 - PRIOR_TOLERANCE_MV) mV: a lead at -0.07 mV then and -0.15 mV now is deepening, not new);
  * "unknown" when the prior cannot tell: no prior, or fewer than two of the group's leads analysable in it;
  * "new" otherwise: it meets the criteria now and did not before.
The record is "new" if any group is new, else "persistent" if any is, else "unknown"; "none" without groups.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from engine.criteria import LIMB_SEQUENCE, PRECORDIAL_SEQUENCE, TWI_DEPTH_MV
from engine.result import PriorSummary, TwiGroup

PRIOR_TOLERANCE_MV = 0.05


def contiguous(a: str, b: str) -> bool:
    for seq in (LIMB_SEQUENCE, PRECORDIAL_SEQUENCE):
        if a in seq and b in seq and abs(seq.index(a) - seq.index(b)) == 1:
            return True
    return False


def _inverted_before(entry: dict[str, Any] | None) -> bool | None:
    """True/False from a prior lead_t entry; None when the prior cannot tell (absent or not analysable)."""
    if not entry or entry.get("quality") != "ok" or entry.get("amplitude_mv") is None:
        return None
    return (entry.get("polarity") in ("negative", "biphasic")
            and float(entry["amplitude_mv"]) <= -(TWI_DEPTH_MV - PRIOR_TOLERANCE_MV))


def as_prior(p: PriorSummary | dict[str, Any]) -> PriorSummary:
    return p if isinstance(p, PriorSummary) else PriorSummary.from_dict(p)


def novelty_against(leads: list[str], prior_groups: list[list[str]], prior_leads: dict[str, Any],
                    was_abnormal: Callable[[dict[str, Any] | None], bool | None]) -> str:
    """Shared by TWI and ST-depression groups: `persistent` when the prior had a group sharing two of these leads, or
    two contiguous of them were abnormal then; `unknown` when the prior cannot tell for two of them; else `new`."""
    for old in prior_groups:
        if len(set(old) & set(leads)) >= 2:
            return "persistent"
    known = {lead: was_abnormal(prior_leads.get(lead)) for lead in leads}
    if sum(v is not None for v in known.values()) < 2:
        return "unknown"
    before = [lead for lead, v in known.items() if v]
    if any(contiguous(a, b) for i, a in enumerate(before) for b in before[i + 1:]):
        return "persistent"
    return "new"


def group_novelty(group: TwiGroup, prior: PriorSummary | None) -> str:
    if prior is None:
        return "unknown"
    return novelty_against(group.leads, prior.twi_groups, prior.lead_t, _inverted_before)


def assign_novelty(groups: list[TwiGroup], priors: list[PriorSummary | dict[str, Any]]) -> str:
    """Sets each group's novelty against the most recent prior (the last in the list); returns the record's."""
    prior = as_prior(priors[-1]) if priors else None
    for g in groups:
        g.novelty = group_novelty(g, prior)
    if not groups:
        return "none"
    kinds = {g.novelty for g in groups}
    for k in ("new", "persistent"):
        if k in kinds:
            return k
    return "unknown"
