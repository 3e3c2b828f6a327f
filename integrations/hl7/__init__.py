"""HL7 v2 waveforms (IHE PCD-01 style ORU^R01, v2.3 ORU^W01): pure codecs and the MLLP edge (docs/SPEC.md §2, §11).

- decode.decode_oru(bytes, sender=rule|None) -> EcgRecord (a strip), decode.decode_pcd01_chunk(...) -> Chunk,
  decode.parse_header(bytes) -> dict   (refusals: DecodeError AE/AR); pcd01.py is the shared OBX walk
- w01.decode_w01(bytes, sender=rule|None) -> Chunk (CHN/TIM/WAV)
- encode.encode_oru(EcgRecord, control_id=...) -> bytes; encode_chunks.encode_pcd01_chunk / encode_w01
- ack.make_ack(header, "AA"|"AE"|"AR", reason) -> bytes
- mllp.MllpBridge (asyncio MLLP -> Kafka), mllp.frame/unframe/FrameReader; serve.serve(...) for the CLI
- codes: the MDC tables (leads, units, attributes)
"""
