"""FHIR codecs and builders, HAPI-like split: the Observation decoder/encoder (observation.py), one builder per output
resource type (diagnostic_report.py, measures.py, device.py, provenance.py) composed by report.py, and validation
against the configured version (R4B default, R5 by configuration). REST edges live elsewhere."""
from integrations.fhir.codes import DISCLAIMER
from integrations.fhir.observation import build_observation, decode_observation, encode_observation
from integrations.fhir.report import build_report_bundle, bundle_bytes, is_research_flagged, report_resource
from integrations.fhir.validation import InvalidFhir, validate_bundle, validate_resource

__all__ = [
    "DISCLAIMER", "InvalidFhir", "build_observation", "build_report_bundle", "bundle_bytes", "decode_observation",
    "encode_observation", "is_research_flagged", "report_resource", "validate_bundle", "validate_resource",
]
