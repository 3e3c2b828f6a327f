"""twiwatch engine: pure numpy/scipy analysis of one EcgRecord.

Imports neither `stream` nor `integrations`: data flows integrations -> engine -> stream.
"""
__version__ = "0.1.0"
