"""The Helm chart, rendered by a real helm (scripts/setup.sh builds it into .cache/bin): it lints, each Deployment reads
its own ConfigMap holding only the settings groups its process builds, every variable is a setting twiwatch reads and
the defaults pass its validation, and the optional ECG-R1 reasoner lands on a GPU node with its weights read-only."""
from __future__ import annotations

import inspect
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError
from pydantic_settings import BaseSettings

import stream.config

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "twiwatch"
GPU = ("reasoner.enabled=true", "reasoner.modelsClaim=ecg-r1-weights")

# The variables each process's ConfigMap holds, by settings group (the env var names of stream/config.py).
KAFKA = {"BOOTSTRAP", "PARTITIONS", "REPLICATION", "MAX_MESSAGE_BYTES", "TOPIC_HL7_RAW", "TOPIC_FHIR_RAW",
         "TOPIC_CHUNKS", "TOPIC_TRENDS", "TOPIC_REPORTS", "TOPIC_DEADLETTER", "TOPIC_REASONING"}
WORKER = {"APP_ID", "WORKER_WEB_PORT", "WORKER_WEB_BIND", "DATA_DIR", "EXACTLY_ONCE", "WORKER_SESSION_TIMEOUT_S",
          "PRIORS_KEPT"}
MONITOR = {f"MONITOR_{name}" for name in ("WINDOW_S", "LATENESS_S", "GAP_TOLERANCE_S", "BASELINE_S", "PERSISTENCE_S",
                                           "PAUSE_MAX_S", "DEPTH_MV", "CLOSE_WITHIN_MV", "CLOSE_PERSIST_S", "SILENCE_S",
                                           "REFRACTORY_S", "MATERIAL_DEPTH_MV", "MIN_UPDATE_INTERVAL_S", "TICK_S")}
ENCODER = {"ENCODER_MANIFEST", "ENCODER_RUNTIME", "ENCODER_CACHE_DIR", "ENCODER_PRECISION", "ENCODER_THREADS",
           "ENCODER_MAX_BATCH", "ENCODER_MAX_WAIT_MS"}
REASONER_CLIENT = {"REASONER_URL", "REASONER_MODEL", "REASONER_TIMEOUT_S", "REASONER_CONCURRENCY", "REASONER_QUEUE"}
REASONER_SERVE = {"REASONER_SERVE_HOST", "REASONER_SERVE_PORT", "REASONER_SERVE_MAX_INFLIGHT",
                  "REASONER_SERVE_MAX_QUEUE", "REASONER_SERVE_MODEL_PATH", "REASONER_SERVE_ECG_TOWER"}
MLLP = {"MLLP_HOST", "MLLP_PORT", "MLLP_WEB_PORT"}
HL7 = {"HL7_SAMP_RATE_CODES", "HL7_TIMEZONE"}  # + SENDERS when hl7.senders is set
FHIR = {"FHIR_VERSION", "FHIR_IDENTIFIER_SYSTEM", "ORGANIZATION"}
EXPECTED = {
    "worker": KAFKA | WORKER | MONITOR | ENCODER | REASONER_CLIENT | HL7 | FHIR | {"LOG_LEVEL"},
    "mllp": KAFKA | MLLP | HL7 | {"LOG_LEVEL"},
    "reasoner": REASONER_SERVE | {"REASONER_MODEL", "MAX_MESSAGE_BYTES", "LOG_LEVEL"},
}
SECRET = "TWIWATCH_PATIENT_HASH_SECRET"


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
        args += ["--set-json" if s.startswith("json:") else "--set", s.removeprefix("json:")]
    out = helm(*args)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def by_kind(docs: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def configs(docs: list[dict]) -> dict[str, dict[str, str]]:
    """Each process's ConfigMap data, by process (worker, mllp, reasoner), without the TWIWATCH_ prefix."""
    out = {}
    for name, cm in by_kind(docs, "ConfigMap").items():
        assert all(k.startswith("TWIWATCH_") for k in cm["data"]), cm["data"]
        out[name.removeprefix("t-twiwatch-")] = {k.removeprefix("TWIWATCH_"): v for k, v in cm["data"].items()}
    return out


def container(docs: list[dict], process: str) -> dict:
    (c,) = by_kind(docs, "Deployment")[f"t-twiwatch-{process}"]["spec"]["template"]["spec"]["containers"]
    return c


def settings_classes() -> list[type[BaseSettings]]:
    """Every settings class stream/config.py defines (one flat Settings today; one per group once it is split)."""
    return [obj for _, obj in inspect.getmembers(stream.config, inspect.isclass)
            if issubclass(obj, BaseSettings) and obj is not BaseSettings and obj.__module__.startswith("stream.config")]


def env_name(cls: type[BaseSettings], field: str) -> str:
    return f"{cls.model_config.get('env_prefix', '')}{field}".upper()


def setting_names() -> set[str]:
    return {env_name(cls, f) for cls in settings_classes() for f in cls.model_fields}


def test_chart_lints():
    for extra in ((), GPU):
        args = ["lint", str(CHART), "--set", "patientHashSecret=test-only"]
        for s in extra:
            args += ["--set", s]
        out = helm(*args)
        assert out.returncode == 0, out.stdout + out.stderr


def test_each_deployment_reads_its_own_config_map_and_rolls_when_it_changes():
    docs = render(*GPU)
    deployments = by_kind(docs, "Deployment")
    assert set(deployments) == {"t-twiwatch-worker", "t-twiwatch-mllp", "t-twiwatch-reasoner"}
    assert set(by_kind(docs, "ConfigMap")) == set(deployments)  # one ConfigMap per Deployment, named after it
    for name in deployments:
        c = container(docs, name.removeprefix("t-twiwatch-"))
        assert c["envFrom"] == [{"configMapRef": {"name": name}}]

    def checksums(*sets: str) -> dict[str, str]:
        return {name: d["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
                for name, d in by_kind(render(*GPU, *sets), "Deployment").items()}

    base = checksums()
    assert len(set(base.values())) == 3

    def rolled(*sets: str) -> set[str]:
        return {name.removeprefix("t-twiwatch-") for name, c in checksums(*sets).items() if c != base[name]}

    assert rolled() == set()
    assert rolled("encoder.maxBatch=8") == {"worker"}
    assert rolled("hl7.timezone=Europe/Berlin") == {"worker", "mllp"}
    assert rolled("kafka.topics.chunks=site.chunks") == {"worker", "mllp"}
    assert rolled("reasoner.maxQueue=2") == {"reasoner"}
    assert rolled("reasoner.model=other") == {"worker", "reasoner"}
    assert rolled("logLevel=DEBUG") == {"worker", "mllp", "reasoner"}


def test_each_config_map_holds_only_what_its_process_reads():
    data = configs(render(*GPU))
    for process, expected in EXPECTED.items():
        assert set(data[process]) == expected, process
    worker, mllp, shim = data["worker"], data["mllp"], data["reasoner"]
    assert not [k for k in worker if k.startswith(("MLLP_", "REASONER_SERVE_"))]
    assert not [k for k in mllp if k.startswith(("ENCODER_", "REASONER_"))]
    assert not [k for k in shim if k.startswith("TOPIC_")] and "BOOTSTRAP" not in shim
    for d in data.values():  # the local broker's folder and the old global scale are nobody's in a pod
        assert "CACHE_DIR" not in d and "HL7_COUNTS_SCALE_MV" not in d and "KAFKA_PORT" not in d
    # shared settings are one value: the shim serves under the name the worker asks for; one size limit on every hop
    assert worker["REASONER_MODEL"] == shim["REASONER_MODEL"] == "ECG-R1-8B-RL"
    assert worker["MAX_MESSAGE_BYTES"] == mllp["MAX_MESSAGE_BYTES"] == shim["MAX_MESSAGE_BYTES"] == "16777216"
    assert {k: worker[k] for k in KAFKA | HL7} == {k: mllp[k] for k in KAFKA | HL7}
    assert worker["TOPIC_CHUNKS"] == "ecg.chunks"
    # numbers and booleans as the settings parse them (a values.yaml number is not 1.6777216e+07)
    assert (worker["PARTITIONS"], worker["EXACTLY_ONCE"], worker["ENCODER_MAX_WAIT_MS"]) == ("6", "false", "20")


def test_every_variable_is_a_setting_and_the_defaults_pass_validation(monkeypatch):
    docs = render(*GPU, 'json:hl7.senders={"ACME^MONITOR": {}}')
    names = setting_names()
    for process, data in configs(docs).items():
        unknown = {f"TWIWATCH_{k}" for k in data} - names
        assert not unknown, f"the chart sets variables stream/config.py does not read ({process}): {sorted(unknown)}"
    # the default values are ones the settings accept (types, FHIR version, time zone), each process on its own env
    for process, data in configs(render(*GPU)).items():
        for k in list(os.environ):
            if k.startswith("TWIWATCH_"):
                monkeypatch.delenv(k)
        for k, v in data.items():
            monkeypatch.setenv(f"TWIWATCH_{k}", v)
        if any(e["name"] == SECRET for e in container(docs, process)["env"]):
            monkeypatch.setenv(SECRET, "test-only")
        for cls in settings_classes():
            if any(env_name(cls, f).removeprefix("TWIWATCH_") in data for f in cls.model_fields):
                try:
                    cls()
                except ValidationError as exc:
                    pytest.fail(f"{process}'s ConfigMap fails {cls.__name__}: {exc}")


def test_senders_rules_reach_the_worker_and_the_mllp_bridge_as_json():
    assert "SENDERS" not in configs(render())["worker"]  # unset: the processes' default
    rules = {"ACME^MONITOR": {"note": "a map in values.yaml"}}
    data = configs(render("json:hl7.senders=" + json.dumps(rules)))
    assert json.loads(data["worker"]["SENDERS"]) == json.loads(data["mllp"]["SENDERS"]) == rules
    data = configs(render("json:hl7.senders=" + json.dumps('[{"sender": "X"}]')))  # a string is passed as it is
    assert data["worker"]["SENDERS"] == '[{"sender": "X"}]'


def test_default_render_worker_and_mllp_only_secure_and_probed():
    docs = render()
    deployments = by_kind(docs, "Deployment")
    assert set(deployments) == {"t-twiwatch-worker", "t-twiwatch-mllp"}
    data = configs(docs)
    assert set(data) == {"worker", "mllp"}
    assert data["worker"]["REASONER_URL"] == ""  # no reasoner unless one is configured
    for d in deployments.values():
        pod = d["spec"]["template"]
        assert pod["metadata"]["labels"]["twiwatch/research-only"] == "true"
        (c,) = pod["spec"]["containers"]
        assert c["readinessProbe"]["httpGet"]["path"] == "/healthz"
        assert pod["metadata"]["annotations"]["prometheus.io/path"] == "/metrics"
        secret_env = {e["name"]: e["valueFrom"]["secretKeyRef"]["key"] for e in c["env"] if "valueFrom" in e}
        assert secret_env == {SECRET: "patient-hash-secret"}
        # non-root on a read-only root filesystem, state and /tmp on writable volumes
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
        assert c["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                        "capabilities": {"drop": ["ALL"]}}
        assert {m["mountPath"] for m in c["volumeMounts"]} == {"/var/lib/twiwatch", "/tmp"}
    # the probes reach the processes: their web servers listen on the pod address, and the state dirs are writable
    worker, mllp = data["worker"], data["mllp"]
    assert worker["WORKER_WEB_BIND"] == "0.0.0.0" and mllp["MLLP_HOST"] == "0.0.0.0"
    assert all(worker[k].startswith("/var/lib/twiwatch/") for k in ("DATA_DIR", "ENCODER_CACHE_DIR"))
    ports = {c["name"]: {p["name"]: p["containerPort"] for p in c["ports"]}
             for c in (container(docs, "worker"), container(docs, "mllp"))}
    assert ports == {"worker": {"web": int(worker["WORKER_WEB_PORT"])},
                     "mllp": {"mllp": int(mllp["MLLP_PORT"]), "web": int(mllp["MLLP_WEB_PORT"])}}


def test_reasoner_on_a_gpu_node_with_read_only_weights_and_the_worker_pointed_at_it():
    docs = render(*GPU)
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
    assert pod["securityContext"]["runAsNonRoot"] is True and c["securityContext"]["readOnlyRootFilesystem"] is True
    assert not [e for e in c["env"] if "valueFrom" in e]  # the shim never sees patient ids: no hash secret
    svc = by_kind(docs, "Service")["t-twiwatch-reasoner"]
    data = configs(docs)
    assert data["worker"]["REASONER_URL"] == f"http://{svc['metadata']['name']}:{svc['spec']['ports'][0]['port']}"
    assert data["reasoner"]["REASONER_SERVE_HOST"] == "0.0.0.0"
    assert data["reasoner"]["REASONER_SERVE_PORT"] == str(c["ports"][0]["containerPort"])
    assert data["reasoner"]["REASONER_SERVE_MODEL_PATH"].startswith("/models/")
    # an explicit url (an external endpoint) is kept
    data = configs(render(*GPU, "reasoner.client.url=http://gpu-box:8011"))
    assert data["worker"]["REASONER_URL"] == "http://gpu-box:8011"


def test_a_gpu_node_label_given_on_the_command_line_stays_a_string():
    docs = render("reasoner.enabled=true", "reasoner.modelsClaim=w", "reasoner.startupSeconds=5",
                  "reasoner.nodeSelector.nvidia\\.com/gpu\\.present=true")
    pod = by_kind(docs, "Deployment")["t-twiwatch-reasoner"]["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}  # the API server refuses a boolean
    assert pod["containers"][0]["startupProbe"]["failureThreshold"] >= 1


def test_clear_errors_for_missing_secret_missing_weights_and_the_old_flat_config():
    out = helm("template", "t", str(CHART))
    assert out.returncode != 0 and "patientHashSecret" in out.stderr
    out = helm("template", "t", str(CHART), "--set", "patientHashSecret=x", "--set", "reasoner.enabled=true")
    assert out.returncode != 0 and "reasoner.modelsClaim" in out.stderr
    # chart 0.1's one `config:` map for every pod would be silently ignored: refused, saying where settings live now
    out = helm("template", "t", str(CHART), "--set", "patientHashSecret=x", "--set", "config.DATA_DIR=/d")
    assert out.returncode != 0 and "worker.extraEnv" in out.stderr


def test_an_operator_can_override_the_state_directory():
    assert configs(render("worker.dataDir=/data/twiwatch"))["worker"]["DATA_DIR"] == "/data/twiwatch"
    rendered = helm("template", "t", str(CHART), "--set", "patientHashSecret=x", "--set", "worker.dataDir=/d").stdout
    assert rendered.count("TWIWATCH_DATA_DIR") == 1  # set once, not a default shadowing the override


def test_extra_env_goes_to_its_own_process_only():
    docs = render(*GPU, "worker.extraEnv[0].name=TWIWATCH_LOG_LEVEL", "worker.extraEnv[0].value=DEBUG",
                  "reasoner.extraEnv[0].name=VLLM_LOGGING_LEVEL", "reasoner.extraEnv[0].value=DEBUG")
    extra = {p: {e["name"]: e.get("value") for e in container(docs, p)["env"]} for p in EXPECTED}
    assert extra["worker"]["TWIWATCH_LOG_LEVEL"] == "DEBUG"  # an env entry wins over the ConfigMap's INFO
    assert extra["reasoner"]["VLLM_LOGGING_LEVEL"] == "DEBUG"
    assert "TWIWATCH_LOG_LEVEL" not in extra["mllp"] and "VLLM_LOGGING_LEVEL" not in extra["worker"]
    assert configs(docs)["worker"]["LOG_LEVEL"] == "INFO"  # the ConfigMap (and its checksum) stay as they were
