"""FHIR XML -> the JSON form (a dict), through fhir.resources' own XML support (docs/SPEC.md §3, §11).

Why fhir.resources rather than a hand-written mapping: FHIR XML does not say which elements repeat or which
primitives are numbers; the models know (coding, component and profile are lists, factor and period decimals).
A hand mapping would need that table for every element a sender may use. fhir.resources reads XML with lxml, so
lxml is a dependency of the worker; the parser is built here without entity expansion, DTD loading or network
access, and a document with a DOCTYPE is refused outright (no XML bombs or external entities).
"""
from __future__ import annotations

import json
from typing import Any

from integrations.errors import DecodeError

_FHIR_NS = "{http://hl7.org/fhir}"


def is_xml(data: bytes) -> bool:
    return data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"<"


def load_xml(data: bytes) -> dict[str, Any]:
    """One FHIR resource in XML as its JSON dict. R5 when its SampledData uses interval/intervalUnit, else R4B (R4
    and R4B share the Observation shape); the dict then goes through the same checks as JSON input."""
    try:
        from lxml import etree
    except ImportError:  # pragma: no cover - the worker's image installs lxml
        raise DecodeError("FHIR XML needs the lxml package, which is not installed", "xml", "AR") from None
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False,
                             huge_tree=False, remove_comments=True, remove_pis=True)
    try:
        root = etree.fromstring(data, parser=parser)
    except etree.XMLSyntaxError as e:
        line = e.position[0] if e.position else 0
        raise DecodeError(f"invalid XML (line {line})", "xml", "AR") from None
    if root.getroottree().docinfo.doctype:
        raise DecodeError("XML with a DOCTYPE is refused (entities are not expanded)", "xml", "AR")
    if not isinstance(root.tag, str) or not root.tag.startswith(_FHIR_NS):
        raise DecodeError("XML root is not in the FHIR namespace", "xml", "AR")
    resource_type = root.tag[len(_FHIR_NS):]
    if resource_type != "Observation":
        raise DecodeError(f"wrong resourceType {resource_type[:40]!r} (expected Observation)", "resource-type", "AR")
    r5 = root.find(f".//{_FHIR_NS}valueSampledData/{_FHIR_NS}intervalUnit") is not None or root.find(
        f".//{_FHIR_NS}valueSampledData/{_FHIR_NS}interval") is not None
    if r5:
        from fhir.resources.observation import Observation
    else:
        from fhir.resources.R4B.observation import Observation
    try:
        model = Observation.model_validate_xml(etree.tostring(root), xmlparser=parser)
    except ValueError as e:  # pydantic's ValidationError is a ValueError
        first = str(e).splitlines()[0][:160]
        raise DecodeError(f"FHIR XML is not a valid Observation: {first}", "fhir-invalid") from None
    return json.loads(model.model_dump_json())
