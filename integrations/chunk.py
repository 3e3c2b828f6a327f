"""What a chunk decoder returns: one piece of a bedside monitor's stream (docs/SPEC.md §11).

Chunks of one bed belong together: the stream assembler keys them by sender + device + bed, binds the patient
per chunk (each segment record carries it) and re-keys by patient only for state that belongs to the patient.
"""
from __future__ import annotations

from dataclasses import dataclass

from engine.record import EcgRecord


@dataclass(frozen=True, eq=False)
class Chunk:
    # Records of kind "chunk", in time order. More than one where the sender marked a gap (an ORU^W01 TIM before
    # further WAVs); none where the message carried only non-ECG signals (normal monitor traffic, not an error).
    segments: tuple[EcgRecord, ...]
    skipped: tuple[str, ...]  # non-ECG signals in the message (pleth, ABP, respiration), by name or code
    sender: str  # "hl7:<MSH-3>|<MSH-4>" or "fhir:<meta.source>" ("fhir:" when the Observation names none)
    device_id: str | None
    # PV1-3 components as given (point of care, room, bed ... or a gateway's ward^bed): the assembler picks the
    # component the sender's rule names; the records' `bed` already holds that one. FHIR: empty.
    bed: tuple[str, ...]
    source_id: str  # sender + control id (HL7) or the Observation identifier (FHIR), as on the records

    @property
    def n_samples(self) -> int:
        return sum(s.n_samples for s in self.segments)

    @property
    def stream_key(self) -> str:
        """Sender + device + bed: the key under which chunks of one bed are assembled (not a patient key)."""
        return "|".join((self.sender, self.device_id or "", "^".join(self.bed)))
