"""HL7 v2 waveforms (IHE PCD-01 style ORU^R01): pure codecs and the MLLP edge.

- decode.decode_oru(bytes) -> EcgRecord, decode.parse_header(bytes) -> dict   (refusals: DecodeError AE/AR)
- encode.encode_oru(EcgRecord, control_id=...) -> bytes
- ack.make_ack(header, "AA"|"AE"|"AR", reason) -> bytes
- mllp.MllpBridge (asyncio MLLP -> Kafka), mllp.frame/unframe/FrameReader; serve.serve(...) for the CLI
- codes: the MDC tables (leads, units, attributes)
"""
