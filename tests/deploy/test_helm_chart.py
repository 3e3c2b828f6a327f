"""The Helm chart, rendered by a real helm (scripts/setup.sh builds it into .cache/bin): it lints, each Deployment reads
its own ConfigMap holding only the settings groups its process builds, every variable is a setting twiwatch reads and
the defaults pass its validation, and the optional ECG-R1 reasoner lands on a GPU node with its weights read-only. The
FHIR sink takes its credentials from the operator's Secret and its CA bundle from a mount; the review dashboard keeps
SQLite on one volume with one replica, or PostgreSQL from a Secret with several."""
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
SINK = ("fhirSink.enabled=true", "fhirSink.url=https://ehr.example.org/fhir")
DASHBOARD = ("dashboard.enabled=true", "dashboard.sessionSecret.value=test-only-session-key")
EVERYTHING = GPU + SINK + DASHBOARD
SMART = ("fhirSink.auth.type=smart", "fhirSink.auth.existingSecret=ehr-credentials", "fhirSink.auth.smart.keyId=k1",
         "fhirSink.caBundle.configMap=ehr-ca")

# The variables each process's ConfigMap holds, by settings group (the env var names of stream/config.py).
KAFKA = {"BOOTSTRAP", "PARTITIONS", "REPLICATION", "MAX_MESSAGE_BYTES", "TOPIC_HL7_RAW", "TOPIC_FHIR_RAW",
         "TOPIC_CHUNKS", "TOPIC_TRENDS", "TOPIC_REPORTS", "TOPIC_DEADLETTER", "TOPIC_REASONING", "TOPIC_ANALYSIS",
         "TOPIC_ADJUDICATIONS", "TOPIC_PRIOR_SUMMARIES"}
WORKER = {"APP_ID", "WORKER_WEB_PORT", "WORKER_WEB_BIND", "DATA_DIR", "EXACTLY_ONCE", "WORKER_SESSION_TIMEOUT_S",
          "PRIORS_KEPT"}
MONITOR = {f"MONITOR_{name}" for name in ("WINDOW_S", "LATENESS_S", "GAP_TOLERANCE_S", "BASELINE_S", "PERSISTENCE_S",
                                           "PAUSE_MAX_S", "DEPTH_MV", "CLOSE_WITHIN_MV", "CLOSE_PERSIST_S", "SILENCE_S",
                                           "REFRACTORY_S", "MATERIAL_DEPTH_MV", "MIN_UPDATE_INTERVAL_S", "TICK_S",
                                           "PRIOR_MAX_AGE_S", "PRIOR_LIMB_LEADS")}
ENCODER = {"ENCODER_MANIFEST", "ENCODER_RUNTIME", "ENCODER_CACHE_DIR", "ENCODER_PRECISION", "ENCODER_THREADS",
           "ENCODER_MAX_BATCH", "ENCODER_MAX_WAIT_MS"}
REASONER_CLIENT = {"REASONER_URL", "REASONER_MODEL", "REASONER_TIMEOUT_S", "REASONER_CONCURRENCY", "REASONER_QUEUE"}
REASONER_SERVE = {"REASONER_SERVE_HOST", "REASONER_SERVE_PORT", "REASONER_SERVE_MAX_INFLIGHT",
                  "REASONER_SERVE_MAX_QUEUE", "REASONER_SERVE_MODEL_PATH", "REASONER_SERVE_ECG_TOWER"}
MLLP = {"MLLP_HOST", "MLLP_PORT", "MLLP_WEB_PORT"}
HL7 = {"HL7_SAMP_RATE_CODES", "HL7_TIMEZONE"}  # + SENDERS when hl7.senders is set
FHIR = {"FHIR_VERSION", "FHIR_IDENTIFIER_SYSTEM", "ORGANIZATION"}
FHIR_SINK = {"FHIR_SINK_URL", "FHIR_SINK_GROUP_ID", "TOPIC_DELIVERY_DEADLETTER", "FHIR_SINK_AUTH",
             "FHIR_SINK_TLS_VERIFY", "FHIR_SINK_TIMEOUT_S", "FHIR_SINK_CONCURRENCY", "FHIR_SINK_CREATE_PATIENTS",
             "FHIR_SINK_REPORTS_PER_TRANSACTION",
             "FHIR_SINK_RETRY_INITIAL_S", "FHIR_SINK_RETRY_MAX_S", "FHIR_SINK_RETRY_AFTER_MAX_S", "FHIR_SINK_WEB_PORT",
             "FHIR_SINK_WEB_BIND", "FHIR_SINK_SESSION_TIMEOUT_S"}  # + SMART ones (auth=smart), CA_FILE (a CA bundle)
DASHBOARD_VARS = {f"DASHBOARD_{n}" for n in ("HOST", "PORT", "DATA_DIR", "GROUP", "IDLE_TIMEOUT_S", "COOKIE_SECURE",
                                             "TIMEZONE", "LOGIN_ATTEMPTS", "LOGIN_WINDOW_S")}
EXPECTED = {
    "worker": KAFKA | WORKER | MONITOR | ENCODER | REASONER_CLIENT | HL7 | FHIR | {"LOG_LEVEL"},
    "mllp": KAFKA | MLLP | HL7 | {"LOG_LEVEL"},
    "reasoner": REASONER_SERVE | {"REASONER_MODEL", "MAX_MESSAGE_BYTES", "LOG_LEVEL"},
    "fhir-sink": KAFKA | FHIR_SINK | FHIR | {"LOG_LEVEL"},
    "dashboard": KAFKA | DASHBOARD_VARS | {"LOG_LEVEL"},
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
    for extra in ((), GPU, EVERYTHING):
        args = ["lint", str(CHART), "--set", "patientHashSecret=test-only"]
        for s in extra:
            args += ["--set", s]
        out = helm(*args)
        assert out.returncode == 0, out.stdout + out.stderr


def test_each_deployment_reads_its_own_config_map_and_rolls_when_it_changes():
    docs = render(*EVERYTHING)
    deployments = by_kind(docs, "Deployment")
    assert set(deployments) == {f"t-twiwatch-{p}" for p in stream.config.PROCESSES}
    assert set(by_kind(docs, "ConfigMap")) == set(deployments)  # one ConfigMap per Deployment, named after it
    for name in deployments:
        c = container(docs, name.removeprefix("t-twiwatch-"))
        assert c["envFrom"] == [{"configMapRef": {"name": name}}]

    def checksums(*sets: str) -> dict[str, str]:
        return {name: d["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
                for name, d in by_kind(render(*EVERYTHING, *sets), "Deployment").items()}

    base = checksums()
    assert len(set(base.values())) == 5

    def rolled(*sets: str) -> set[str]:
        return {name.removeprefix("t-twiwatch-") for name, c in checksums(*sets).items() if c != base[name]}

    assert rolled() == set()
    assert rolled("encoder.maxBatch=8") == {"worker"}
    assert rolled("hl7.timezone=Europe/Berlin") == {"worker", "mllp"}
    assert rolled("kafka.topics.chunks=site.chunks") == {"worker", "mllp", "fhir-sink", "dashboard"}
    assert rolled("reasoner.maxQueue=2") == {"reasoner"}
    assert rolled("reasoner.model=other") == {"worker", "reasoner"}
    assert rolled("fhir.version=R5") == {"worker", "fhir-sink"}
    assert rolled("fhirSink.concurrency=4") == {"fhir-sink"}
    assert rolled("dashboard.timezone=Europe/Berlin") == {"dashboard"}
    assert rolled("logLevel=DEBUG") == set(stream.config.PROCESSES)


def test_each_config_map_holds_only_what_its_process_reads():
    data = configs(render(*EVERYTHING))
    for process, cm in data.items():  # each name is a setting of that very process (stream/config.py PROCESSES)
        assert {f"TWIWATCH_{k}" for k in cm} <= stream.config.env_names(stream.config.PROCESSES[process]), process
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
    docs = render(*EVERYTHING, *SMART, 'json:hl7.senders={"ACME^MONITOR": {}}')
    names = setting_names()
    for process, data in configs(docs).items():
        unknown = {f"TWIWATCH_{k}" for k in data} - names
        assert not unknown, f"the chart sets variables stream/config.py does not read ({process}): {sorted(unknown)}"
        env = {e["name"] for e in container(docs, process)["env"] if e["name"].startswith("TWIWATCH_")}
        assert env <= stream.config.env_names(stream.config.PROCESSES[process]), process  # the Secret-fed ones too
    # the default values are ones the settings accept (types, FHIR version, time zone), each process on its own env
    for process, data in configs(render(*EVERYTHING)).items():
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
    docs = render(*EVERYTHING, "worker.extraEnv[0].name=TWIWATCH_LOG_LEVEL", "worker.extraEnv[0].value=DEBUG",
                  "reasoner.extraEnv[0].name=VLLM_LOGGING_LEVEL", "reasoner.extraEnv[0].value=DEBUG",
                  "fhirSink.extraEnv[0].name=HTTPS_PROXY", "fhirSink.extraEnv[0].value=http://proxy:3128")
    extra = {p: {e["name"]: e.get("value") for e in container(docs, p)["env"]} for p in EXPECTED}
    assert extra["worker"]["TWIWATCH_LOG_LEVEL"] == "DEBUG"  # an env entry wins over the ConfigMap's INFO
    assert extra["reasoner"]["VLLM_LOGGING_LEVEL"] == "DEBUG"
    assert extra["fhir-sink"]["HTTPS_PROXY"] == "http://proxy:3128"
    assert "TWIWATCH_LOG_LEVEL" not in extra["mllp"] and "VLLM_LOGGING_LEVEL" not in extra["worker"]
    assert not [p for p in extra if p != "fhir-sink" and "HTTPS_PROXY" in extra[p]]
    assert configs(docs)["worker"]["LOG_LEVEL"] == "INFO"  # the ConfigMap (and its checksum) stay as they were


def _secret_refs(c: dict) -> dict[str, tuple[str, str]]:
    return {e["name"]: (e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
            for e in c["env"] if "valueFrom" in e}


def _pod(docs: list[dict], process: str) -> dict:
    return by_kind(docs, "Deployment")[f"t-twiwatch-{process}"]["spec"]["template"]


def test_fhir_sink_is_off_until_enabled_with_a_url_and_then_probed_scraped_and_secure():
    assert "t-twiwatch-fhir-sink" not in by_kind(render("fhirSink.url=https://ehr/fhir"), "Deployment")
    out = helm("template", "t", str(CHART), "--set", "patientHashSecret=x", "--set", "fhirSink.enabled=true")
    assert out.returncode != 0 and "fhirSink.url" in out.stderr
    docs = render(*SINK)
    pod, c = _pod(docs, "fhir-sink"), container(docs, "fhir-sink")
    data = configs(docs)["fhir-sink"]
    assert c["args"] == ["fhir-sink"] and data["FHIR_SINK_URL"] == "https://ehr.example.org/fhir"
    assert data["FHIR_SINK_AUTH"] == "none" and data["FHIR_SINK_TLS_VERIFY"] == "true"
    assert "FHIR_SINK_CA_FILE" not in data  # the image's trust store
    assert data["FHIR_SINK_WEB_BIND"] == "0.0.0.0"  # the probes and Prometheus reach it
    assert c["ports"] == [{"name": "web", "containerPort": int(data["FHIR_SINK_WEB_PORT"])}]
    assert c["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "web"}
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == data["FHIR_SINK_WEB_PORT"]
    assert pod["metadata"]["annotations"]["prometheus.io/path"] == "/metrics"
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True and c["securityContext"]["readOnlyRootFilesystem"]
    assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
    assert _secret_refs(c) == {}  # no credentials, and the sink never sees patient-id hashes' key


def test_fhir_sink_credentials_come_from_the_operators_secret_never_the_config_map():
    for sets, missing in ((("fhirSink.auth.type=bearer",), "existingSecret"),
                          (("fhirSink.auth.type=smart", "fhirSink.auth.existingSecret=s"), "keyId"),
                          (("fhirSink.auth.type=basic",), "none, bearer or smart"),
                          (("fhirSink.caBundle.configMap=a", "fhirSink.caBundle.secret=b"), "not both")):
        args = ["template", "t", str(CHART), "--set", "patientHashSecret=x"]
        for s in SINK + sets:
            args += ["--set", s]
        out = helm(*args)
        assert out.returncode != 0 and missing in out.stderr, (sets, out.stderr)
    docs = render(*SINK, "fhirSink.auth.type=bearer", "fhirSink.auth.existingSecret=ehr-token")
    assert _secret_refs(container(docs, "fhir-sink")) == {
        "TWIWATCH_FHIR_SINK_BEARER_TOKEN": ("ehr-token", "bearer-token")}
    assert not [k for k in configs(docs)["fhir-sink"] if "TOKEN" in k and "URL" not in k]
    # SMART: the client id from the Secret, the private key a read-only file from it, where the setting points
    docs = render(*SINK, *SMART)
    pod, c, data = _pod(docs, "fhir-sink")["spec"], container(docs, "fhir-sink"), configs(docs)["fhir-sink"]
    assert _secret_refs(c) == {"TWIWATCH_FHIR_SINK_SMART_CLIENT_ID": ("ehr-credentials", "client-id")}
    assert "FHIR_SINK_SMART_CLIENT_ID" not in data and "FHIR_SINK_BEARER_TOKEN" not in data
    assert data["FHIR_SINK_SMART_KEY_ID"] == "k1" and data["FHIR_SINK_SMART_ALG"] == "RS384"
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    key = volumes["smart-key"]["secret"]
    assert key["secretName"] == "ehr-credentials" and key["defaultMode"] == 0o400
    assert mounts["smart-key"]["readOnly"] is True
    assert data["FHIR_SINK_SMART_KEY_FILE"] == f"{mounts['smart-key']['mountPath']}/{key['items'][0]['path']}"
    # the CA bundle that verifies the EHR's certificates: mounted read-only, named by the setting
    ca = volumes["ca-bundle"]["configMap"]
    assert ca["name"] == "ehr-ca" and mounts["ca-bundle"]["readOnly"] is True
    assert data["FHIR_SINK_CA_FILE"] == f"{mounts['ca-bundle']['mountPath']}/{ca['items'][0]['path']}"
    docs = render(*SINK, "fhirSink.caBundle.secret=ehr-ca-secret", "fhirSink.caBundle.key=bundle.pem")
    vol = next(v for v in _pod(docs, "fhir-sink")["spec"]["volumes"] if v["name"] == "ca-bundle")
    assert vol["secret"]["secretName"] == "ehr-ca-secret"
    assert configs(docs)["fhir-sink"]["FHIR_SINK_CA_FILE"].endswith("/bundle.pem")


def test_dashboard_sqlite_on_one_volume_with_one_replica():
    out = helm("template", "t", str(CHART), "--set", "patientHashSecret=x", "--set", "dashboard.enabled=true")
    assert out.returncode != 0 and "sessionSecret" in out.stderr  # no per-pod random key that logs users out
    docs = render(*DASHBOARD, "dashboard.replicas=3")
    d = by_kind(docs, "Deployment")["t-twiwatch-dashboard"]
    assert d["spec"]["replicas"] == 1 and d["spec"]["strategy"] == {"type": "Recreate"}  # SQLite: one writer
    pod, c, data = d["spec"]["template"], container(docs, "dashboard"), configs(docs)["dashboard"]
    assert c["args"] == ["dashboard"] and data["DASHBOARD_HOST"] == "0.0.0.0" and data["DASHBOARD_PORT"] == "8070"
    assert "DASHBOARD_DB_URL" not in data and "DASHBOARD_SESSION_SECRET" not in data
    assert _secret_refs(c) == {SECRET: ("t-twiwatch-secret", "patient-hash-secret"),
                               "TWIWATCH_DASHBOARD_SESSION_SECRET": ("t-twiwatch-dashboard", "session-secret")}
    assert by_kind(docs, "Secret")["t-twiwatch-dashboard"]["stringData"] == {"session-secret": "test-only-session-key"}
    pvc = by_kind(docs, "PersistentVolumeClaim")["t-twiwatch-dashboard"]
    store = next(v for v in pod["spec"]["volumes"] if v["name"] == "store")
    assert store["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    assert {"name": "store", "mountPath": data["DASHBOARD_DATA_DIR"]} in c["volumeMounts"]
    for probe in ("readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == "8070"
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True and c["securityContext"]["readOnlyRootFilesystem"]
    svc = by_kind(docs, "Service")["t-twiwatch-dashboard"]
    assert svc["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http"}]
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"http": 8070}
    # an existing claim is used as it is; a new session key rolls the pods
    docs = render(*DASHBOARD, "dashboard.persistence.existingClaim=reviews")
    assert "PersistentVolumeClaim" not in {d["kind"] for d in docs}
    store = next(v for v in _pod(docs, "dashboard")["spec"]["volumes"] if v["name"] == "store")
    assert store["persistentVolumeClaim"]["claimName"] == "reviews"
    again = _pod(render(*DASHBOARD[:1], "dashboard.sessionSecret.value=other"), "dashboard")["metadata"]["annotations"]
    assert again["checksum/session-secret"] != pod["metadata"]["annotations"]["checksum/session-secret"]


def test_dashboard_on_postgresql_from_a_secret_runs_several_replicas_without_a_volume():
    docs = render("dashboard.enabled=true", "dashboard.replicas=3", "dashboard.database.existingSecret=review-db",
                  "dashboard.sessionSecret.existingSecret=review-session")
    d = by_kind(docs, "Deployment")["t-twiwatch-dashboard"]
    assert d["spec"]["replicas"] == 3 and "strategy" not in d["spec"]
    c = container(docs, "dashboard")
    assert _secret_refs(c) == {SECRET: ("t-twiwatch-secret", "patient-hash-secret"),
                               "TWIWATCH_DASHBOARD_DB_URL": ("review-db", "url"),
                               "TWIWATCH_DASHBOARD_SESSION_SECRET": ("review-session", "session-secret")}
    assert "PersistentVolumeClaim" not in {d["kind"] for d in docs}
    assert "t-twiwatch-dashboard" not in by_kind(docs, "Secret")  # the operator's Secret, not one of ours
    assert {m["name"] for m in c["volumeMounts"]} == {"state", "tmp"}
