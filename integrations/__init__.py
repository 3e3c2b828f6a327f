"""twiwatch integrations: pure codecs (bytes <-> EcgRecord, Analysis -> FHIR) and the network edges (MLLP)."""
