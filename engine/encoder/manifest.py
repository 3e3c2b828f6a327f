"""The JSON manifest written beside every exported model: what the graph expects and where it came from. No torch.

Runtimes read the input contract from here (never from assumptions), and the engine cache keys on `onnx.sha256`.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

MANIFEST_FORMAT = "twiwatch-encoder-manifest/1"


class ManifestError(ValueError):
    """A manifest that is missing, unreadable, or does not match its model file."""


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def manifest_path_for(onnx_path: str | Path) -> Path:
    """model.onnx -> model.json (beside it)."""
    return Path(onnx_path).with_suffix(".json")


def write_manifest(manifest: dict[str, Any], path: str | Path) -> Path:
    path = Path(path)
    path.write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    return path


def load_manifest(path: str | Path, *, verify: bool = True) -> dict[str, Any]:
    """Read a manifest (or the manifest beside an .onnx path); with verify, check the model file's sha256."""
    path = Path(path)
    if path.suffix == ".onnx":
        path = manifest_path_for(path)
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise ManifestError(f"no manifest at {path} (export the model first: twiwatch model export)") from None
    except json.JSONDecodeError as exc:
        raise ManifestError(f"manifest {path} is not JSON: {exc}") from None
    if manifest.get("format") != MANIFEST_FORMAT:
        raise ManifestError(f"manifest {path}: format {manifest.get('format')!r}, expected {MANIFEST_FORMAT!r}")
    manifest["_dir"] = str(path.parent.resolve())
    if verify:
        _verify(path, model_file(manifest), manifest["onnx"]["sha256"])
        fused = ort_cpu_file(manifest)
        if fused is not None:
            _verify(path, fused, manifest["onnx"]["ort_cpu"]["sha256"])
        weights = weights_file(manifest)
        if weights is not None and weights.is_file():  # optional (shipped models have none); checked when present
            _verify(path, weights, manifest["weights"]["sha256"])
    return manifest


def _verify(manifest_path: Path, file: Path, sha256: str) -> None:
    if not file.is_file():
        raise ManifestError(f"manifest {manifest_path}: model file {file} is missing")
    digest = sha256_file(file)
    if digest != sha256:
        raise ManifestError(f"manifest {manifest_path}: {file.name} sha256 {digest[:12]}… does not match the "
                            f"manifest's {sha256[:12]}… (re-export)")


def model_file(manifest: dict[str, Any]) -> Path:
    return Path(manifest["_dir"]) / manifest["onnx"]["file"]


def ort_cpu_file(manifest: dict[str, Any]) -> Path | None:
    """The graph with ONNX Runtime's CPU fusions (engine.encoder.ort_graph), when the export wrote one."""
    fused = manifest["onnx"].get("ort_cpu") or {}
    return Path(manifest["_dir"]) / fused["file"] if fused.get("file") else None


def weights_file(manifest: dict[str, Any]) -> Path | None:
    """The torch weights beside the model (for the torch runtime), when the export kept them."""
    weights = manifest.get("weights")
    return Path(manifest["_dir"]) / weights["file"] if weights else None
