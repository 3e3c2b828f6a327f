"""Validation against the configured FHIR version's fhir.resources models (R4B default, R5 by configuration).

Reasons carry element paths and pydantic error types only: pydantic's own messages quote the input value, which may be
patient data.
"""
from __future__ import annotations

import importlib
from functools import cache
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

FhirVersion = Literal["R4B", "R5"]
FHIR_VERSIONS: tuple[str, ...] = ("R4B", "R5")


# fhir.resources checks structure and primitive formats but not required code bindings ("bogus" passes as a status).
# The bindings of the elements this project emits, per version, checked on top.
_COMMON_BINDINGS: dict[tuple[str, str], frozenset[str]] = {
    ("DiagnosticReport", "status"): frozenset(
        "registered partial preliminary final amended corrected appended cancelled entered-in-error unknown".split()),
    ("Observation", "status"): frozenset(
        "registered preliminary final amended corrected cancelled entered-in-error unknown".split()),
    ("Bundle", "entry.request.method"): frozenset("GET HEAD POST PUT DELETE PATCH".split()),
    ("*", "text.status"): frozenset("generated extensions additional empty".split()),
}
_BINDINGS: dict[str, dict[tuple[str, str], frozenset[str]]] = {
    "R4B": {
        **_COMMON_BINDINGS,
        ("Device", "status"): frozenset("active inactive entered-in-error unknown".split()),
        ("Device", "deviceName.type"): frozenset(
            "udi-label-name user-friendly-name patient-reported-name manufacturer-name model-name other".split()),
        ("Provenance", "entity.role"): frozenset("derivation revision quotation source removal".split()),
        ("Bundle", "type"): frozenset(
            "document message transaction transaction-response batch batch-response history searchset collection"
            .split()),
    },
    "R5": {
        **_COMMON_BINDINGS,
        ("DiagnosticReport", "status"): _COMMON_BINDINGS[("DiagnosticReport", "status")] | {"modified"},
        ("Device", "status"): frozenset("active inactive entered-in-error".split()),
        ("Device", "name.type"): frozenset("registered-name user-friendly-name patient-reported-name".split()),
        ("Provenance", "entity.role"): frozenset("revision quotation source instantiates removal".split()),
        ("Bundle", "type"): frozenset(
            "document message transaction transaction-response batch batch-response history searchset collection "
            "subscription-notification".split()),
    },
}


class InvalidFhir(ValueError):
    """A resource or bundle this project built (or was given) is not valid FHIR for the version asked."""


def check_version(fhir_version: str) -> FhirVersion:
    if fhir_version not in FHIR_VERSIONS:
        raise ValueError(f"unsupported FHIR version {fhir_version!r} (use R4B or R5)")
    return fhir_version  # type: ignore[return-value]


@cache
def model_class(fhir_version: str, resource_type: str) -> type[BaseModel]:
    """fhir.resources model class: `fhir.resources.R4B.<type>` or the default (R5) package."""
    package = "fhir.resources.R4B" if check_version(fhir_version) == "R4B" else "fhir.resources"
    module = importlib.import_module(f"{package}.{resource_type.lower()}")
    return getattr(module, resource_type)


def error_summary(exc: ValidationError, limit: int = 3) -> str:
    """`path: type` for the first few errors, without input values."""
    parts = []
    for err in exc.errors()[:limit]:
        loc = ".".join(str(p) for p in err.get("loc", ())) or "<root>"
        parts.append(f"{loc}: {err.get('type', 'invalid')}")
    more = exc.error_count() - limit
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


def validate_resource(resource: dict[str, Any], fhir_version: str) -> None:
    """Raise InvalidFhir unless `resource` validates under the version's model for its resourceType."""
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str):
        raise InvalidFhir("resource without resourceType")
    try:
        cls = model_class(fhir_version, resource_type)
    except (ImportError, AttributeError):
        raise InvalidFhir(f"unknown resourceType {resource_type!r} in FHIR {fhir_version}") from None
    try:
        cls.model_validate(resource)
    except ValidationError as exc:
        raise InvalidFhir(f"invalid FHIR {fhir_version} {resource_type}: {error_summary(exc)}") from None
    for (rtype, path), allowed in _BINDINGS[fhir_version].items():
        if rtype not in ("*", resource_type):
            continue
        for value in _values_at(resource, path.split(".")):
            if value not in allowed:
                raise InvalidFhir(f"invalid FHIR {fhir_version} {resource_type}: {path} is not a code of its value set")


def _values_at(node: Any, path: list[str]):
    """Values at a dotted path, stepping through lists."""
    if isinstance(node, list):
        for item in node:
            yield from _values_at(item, path)
    elif not path:
        yield node
    elif isinstance(node, dict) and path[0] in node:
        yield from _values_at(node[path[0]], path[1:])


def validate_bundle(bundle: dict[str, Any], fhir_version: str = "R4B") -> None:
    """Raise InvalidFhir unless the Bundle and every entry's resource are valid under `fhir_version`,
    fullUrls are unique and every in-bundle (urn:uuid) reference resolves to an entry."""
    if bundle.get("resourceType") != "Bundle":
        raise InvalidFhir("not a Bundle")
    entries = bundle.get("entry") or []
    full_urls = [e.get("fullUrl") for e in entries]
    if len(set(full_urls)) != len(full_urls):
        raise InvalidFhir("duplicate fullUrl in bundle")
    for index, entry in enumerate(entries):
        resource = entry.get("resource")
        if not isinstance(resource, dict):
            raise InvalidFhir(f"entry {index} has no resource")
        try:
            validate_resource(resource, fhir_version)
        except InvalidFhir as exc:
            raise InvalidFhir(f"entry {index}: {exc}") from None
    validate_resource(bundle, fhir_version)
    known = set(full_urls)
    for ref in _references(bundle):
        if ref.startswith("urn:uuid:") and ref not in known:
            raise InvalidFhir(f"reference {ref} does not resolve inside the bundle")


def _references(node: Any):
    """Every Reference.reference string under `node`."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                yield value
            else:
                yield from _references(value)
    elif isinstance(node, list):
        for item in node:
            yield from _references(item)
