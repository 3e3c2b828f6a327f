"""Decode errors carry a machine code and a readable reason that goes to the dead-letter topic and the NAK."""
from engine.errors import InvalidRecord


class DecodeError(InvalidRecord):
    """Bytes that cannot become an EcgRecord. `ack_code` is the HL7 answer an MLLP edge gives: AE (content) or AR
    (refused)."""

    def __init__(self, reason: str, code: str = "decode", ack_code: str = "AE") -> None:
        super().__init__(reason, code)
        self.ack_code = ack_code
