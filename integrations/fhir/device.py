"""Device builders: the twiwatch software (AI Transparency "AI Device" pattern) and, when reasoning ran, the
reasoning model. Device shapes differ between R4B (deviceName.name, one type) and R5 (name.value, a list of types)."""
from __future__ import annotations

import hashlib
from typing import Any

from integrations.fhir import codes
from integrations.fhir.context import research_meta
from integrations.fhir.ids import full_url

DEFAULT_MODEL_CARD = "docs/MODEL_CARD.md in the twiwatch distribution"


def _device_key(name: str, version: str, extra: dict[str, str]) -> str:
    """A Device is one software configuration: the same name, version and model versions give the same Device."""
    text = "|".join([name, version] + [f"{k}={v}" for k, v in sorted(extra.items())])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


def device_id(name: str, version: str, extra: dict[str, str]) -> str:
    return f"twi-device-{_device_key(name, version, extra)}"


def device_url(name: str, version: str, extra: dict[str, str]) -> str:
    return full_url("Device", device_id(name, version, extra))


def _device(fhir_version: str, name: str, type_text: str, versions: list[tuple[str, str]], notes: list[str],
            organization: str | None, key_extra: dict[str, str], main_version: str,
            manufacturer: str | None = None) -> dict[str, Any]:
    """organization: the site running twiwatch (TWIWATCH_ORGANIZATION), written as the Device's owner; the maker of
    the software or model is the manufacturer, a different party."""
    did = device_id(name, main_version, key_extra)
    device: dict[str, Any] = {
        "resourceType": "Device",
        "id": did,
        "meta": research_meta(security=False),
        "identifier": [{"system": codes.DEVICE_ID_SYSTEM, "value": did}],
        "status": "active",
    }
    if manufacturer:
        device["manufacturer"] = manufacturer
    if organization:
        device["owner"] = {"display": organization}
    type_concept = {"text": type_text}
    if fhir_version == "R4B":
        device["deviceName"] = [{"name": name, "type": "user-friendly-name"}]
        device["type"] = type_concept
    else:
        device["name"] = [{"value": name, "type": "user-friendly-name"}]
        device["type"] = [type_concept]
    device["version"] = [{"type": {"text": kind}, "value": value} for kind, value in versions]
    device["note"] = [{"text": text} for text in notes]
    return device


def build_software_device(
    fhir_version: str,
    *,
    software_version: str,
    model_versions: dict[str, str],
    organization: str | None = None,
    model_card: str = DEFAULT_MODEL_CARD,
) -> dict[str, Any]:
    versions = [("software", software_version)] + [(f"model {k}", v) for k, v in sorted(model_versions.items())]
    notes = [codes.DISCLAIMER, f"Model card: {model_card}"]
    return _device(fhir_version, "twiwatch", "ECG T-wave analysis software with ML models (research use only)",
                   versions, notes, organization, model_versions, software_version, manufacturer="twiwatch project")


def reasoning_device_identity(reasoning: dict[str, Any], model_versions: dict[str, str]) -> tuple[str, str]:
    """(name, version) of the reasoning model: reasoning["model"] / ["version"], else model_versions["reasoning"]."""
    name = str(reasoning.get("model") or "reasoning model")
    version = str(reasoning.get("version") or model_versions.get("reasoning") or model_versions.get(name) or "unknown")
    return name, version


def build_reasoning_device(
    fhir_version: str, reasoning: dict[str, Any], model_versions: dict[str, str], organization: str | None = None
) -> dict[str, Any]:
    name, version = reasoning_device_identity(reasoning, model_versions)
    notes = [codes.DISCLAIMER, "Multimodal language model producing ECG reasoning text; its lead-level claims are "
             "cross-checked against the measurements and stay unverified."]
    return _device(fhir_version, name, "ECG reasoning language model (research use only)",
                   [("model", version)], notes, organization, {}, version)
