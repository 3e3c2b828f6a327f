"""The Helm chart, rendered by a real helm (scripts/setup.sh builds it into .cache/bin): it lints, every value it
sets is a setting twiwatch reads, and the optional ECG-R1 reasoner lands on a GPU node with its weights read-only."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from stream.config import Settings

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "deploy" / "helm" / "twiwatch"


def _helm() -> str:
    for cand in (ROOT / ".cache" / "bin" / "helm", shutil.which("helm")):
        if cand and os.access(cand, os.X_OK):
            return str(cand)
    pytest.fail("helm not found: run scripts/setup.sh (it builds helm into .cache/bin with `go install`)")


def helm(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([_helm(), *args], capture_output=True, text=True, timeout=120)


def render(*sets: str) -> list[dict]:
    args = ["template", "t", str(CHART), "--set", "patientHashSecret=test-only"]
    for s in sets:
        args += ["--set", s]
    out = helm(*args)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def by_kind(docs: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def test_chart_lints():
    out = helm("lint", str(CHART), "--set", "patientHashSecret=test-only")
    assert out.returncode == 0, out.stdout + out.stderr


def test_default_render_worker_and_mllp_only_and_every_variable_is_a_setting():
    docs = render()
    deployments = by_kind(docs, "Deployment")
    assert set(deployments) == {"t-twiwatch-worker", "t-twiwatch-mllp"}
    (config,) = by_kind(docs, "ConfigMap").values()
    fields = {f"TWIWATCH_{name.upper()}" for name in Settings.model_fields}
    unknown = set(config["data"]) - fields
    assert not unknown, f"the chart sets variables stream/config.py does not read: {sorted(unknown)}"
    assert config["data"]["TWIWATCH_REASONER_URL"] == ""  # no reasoner unless one is configured
    for d in deployments.values():
        pod = d["spec"]["template"]
        assert pod["metadata"]["labels"]["twiwatch/research-only"] == "true"
        (c,) = pod["spec"]["containers"]
        assert c["readinessProbe"]["httpGet"]["path"] == "/healthz"
        assert pod["metadata"]["annotations"]["prometheus.io/path"] == "/metrics"
        secret_env = {e["name"]: e["valueFrom"]["secretKeyRef"]["key"] for e in c["env"] if "valueFrom" in e}
        assert secret_env == {"TWIWATCH_PATIENT_HASH_SECRET": "patient-hash-secret"}
        # non-root on a read-only root filesystem, state and /tmp on writable volumes
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
        assert c["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                        "capabilities": {"drop": ["ALL"]}}
        assert {m["mountPath"] for m in c["volumeMounts"]} == {"/var/lib/twiwatch", "/tmp"}
    # the probes reach the worker: its web server listens on the pod address, and its state dir is writable
    data = config["data"]
    assert data["TWIWATCH_WORKER_WEB_BIND"] == "0.0.0.0"
    assert all(data[k].startswith("/var/lib/twiwatch/") for k in ("TWIWATCH_DATA_DIR", "TWIWATCH_ENCODER_CACHE_DIR"))


def test_reasoner_on_a_gpu_node_with_read_only_weights_and_the_worker_pointed_at_it():
    docs = render("reasoner.enabled=true", "reasoner.modelsClaim=ecg-r1-weights")
    d = by_kind(docs, "Deployment")["t-twiwatch-reasoner"]
    pod = d["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["args"] == ["reasoner", "serve"]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert c["startupProbe"]["httpGet"]["path"] == "/healthz" and c["startupProbe"]["failureThreshold"] * 10 >= 600
    vol = next(v for v in pod["volumes"] if v["name"] == "models")
    assert vol["persistentVolumeClaim"] == {"claimName": "ecg-r1-weights", "readOnly": True}
    assert {"name": "models", "mountPath": "/models", "readOnly": True} in c["volumeMounts"]
    svc = by_kind(docs, "Service")["t-twiwatch-reasoner"]
    (config,) = by_kind(docs, "ConfigMap").values()
    data = config["data"]
    assert data["TWIWATCH_REASONER_URL"] == f"http://{svc['metadata']['name']}:{svc['spec']['ports'][0]['port']}"
    assert data["TWIWATCH_REASONER_SERVE_HOST"] == "0.0.0.0"
    assert data["TWIWATCH_REASONER_SERVE_MODEL_PATH"].startswith("/models/")
    # an explicit REASONER_URL (an external endpoint) is kept
    docs = render("reasoner.enabled=true", "reasoner.modelsClaim=w", "config.REASONER_URL=http://gpu-box:8011")
    (config,) = by_kind(docs, "ConfigMap").values()
    assert config["data"]["TWIWATCH_REASONER_URL"] == "http://gpu-box:8011"


def test_a_gpu_node_label_given_on_the_command_line_stays_a_string():
    docs = render("reasoner.enabled=true", "reasoner.modelsClaim=w", "reasoner.startupSeconds=5",
                  "reasoner.nodeSelector.nvidia\\.com/gpu\\.present=true")
    pod = by_kind(docs, "Deployment")["t-twiwatch-reasoner"]["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}  # the API server refuses a boolean
    assert pod["containers"][0]["startupProbe"]["failureThreshold"] >= 1


def test_clear_errors_for_missing_secret_and_missing_weights():
    out = helm("template", "t", str(CHART))
    assert out.returncode != 0 and "patientHashSecret" in out.stderr
    out = helm("template", "t", str(CHART), "--set", "patientHashSecret=x", "--set", "reasoner.enabled=true")
    assert out.returncode != 0 and "reasoner.modelsClaim" in out.stderr


def test_an_operator_can_override_the_state_directory():
    (config,) = by_kind(render("config.DATA_DIR=/data/twiwatch"), "ConfigMap").values()
    assert config["data"]["TWIWATCH_DATA_DIR"] == "/data/twiwatch"
    rendered = helm("template", "t", str(CHART), "--set", "patientHashSecret=x", "--set", "config.DATA_DIR=/d").stdout
    assert rendered.count("TWIWATCH_DATA_DIR") == 1  # set once, not a default shadowing the override
