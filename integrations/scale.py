"""The scale rule (docs/SPEC.md §11): how raw numbers become millivolts, for strips and chunks alike.

1. A scale stated in the message always wins: a voltage unit on the samples, a resolution (the value of one count),
   or a W01 channel sensitivity.
2. Without one, the sender's own rule from configuration (mV per count, per sender or device).
3. Without either, the array is a dead letter with the reason. There is no global default.
Conflicting statements (a voltage unit on the samples and a resolution that says they are counts) are refused, and
so is a scaling attribute the decoder does not understand: a 20x amplitude error silently hides every T-wave
inversion, a dead letter is seen.
"""
from __future__ import annotations

import numpy as np

from integrations.errors import DecodeError


def counts_scale(
    lead: str,
    *,
    unit_mv: float | None,
    resolution_mv: float | None,
    rule_mv_per_count: float | None,
    counts: np.ndarray,
    resolution_name: str = "resolution",
) -> float:
    """mV per sample unit for one signal.

    unit_mv: mV per unit when the samples carry a voltage unit, None when they are counts (no unit, dimensionless).
    resolution_mv: the message's value of one count in mV (MDC_ATTR_NU_MSMT_RES, W01 sensitivity), or None.
    rule_mv_per_count: the sender rule's mV per count, or None. counts: the raw samples (checked to be integers
    when they are counts: decimals are a voltage, and scaling them as counts would shrink the signal).
    """
    if unit_mv is not None and resolution_mv is not None:
        raise DecodeError(f"lead {lead}: the samples carry a voltage unit and a {resolution_name} that says they are "
                          "counts; the two scale statements disagree", "scale-conflict", "AE")
    if unit_mv is not None:
        return unit_mv
    scale = resolution_mv if resolution_mv is not None else rule_mv_per_count
    if scale is None:
        raise DecodeError(f"lead {lead}: the samples are counts with no unit, no {resolution_name} and no sender "
                          "rule (mv_per_count) for this sender: the scale is unknown", "no-scale", "AE")
    # Decimals are a voltage, not counts; a sender rule of 1 mV per unit says the unit-less values are millivolts.
    if scale != 1.0 and not np.array_equal(counts, np.round(counts)):
        raise DecodeError(f"lead {lead}: the samples have no voltage unit and are not integer counts; send the unit "
                          "(mV or uV)", "unit", "AE")
    return scale


def check_range(lead: str, values: np.ndarray, low: float, high: float, tolerance: float, what: str) -> None:
    """Samples must lie within the declared data range (plus one count): outside it, the range and the scale the
    samples were read with disagree (the usual sign of a missed resolution or a unit off by 1000)."""
    if low > high:
        raise DecodeError(f"lead {lead}: {what} has its minimum above its maximum", "scale-conflict", "AE")
    if values.size and (values.min() < low - tolerance or values.max() > high + tolerance):
        raise DecodeError(f"lead {lead}: samples fall outside the declared {what}: the scale statements disagree",
                          "scale-conflict", "AE")


def scale_number(text: str, what: str) -> float:
    """A number that scales samples (resolution, sensitivity, range, rate): anything else refuses the message,
    since a scale the decoder cannot read must never be guessed (docs/SPEC.md §11.5)."""
    try:
        value = float(text)
    except ValueError:
        raise DecodeError(f"{what} is missing or not a number", "scale-attribute", "AE") from None
    if not np.isfinite(value):
        raise DecodeError(f"{what} is not finite", "scale-attribute", "AE")
    return value
