"""Shared fixtures: the real local Kafka broker, isolated topic names per test, the shipped real recordings, the
serving shim with the stand-in generator."""
from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from stream.config import ToolSettings
from stream.devtools.e2e import isolated_settings

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """Start the local broker if it is not running (scripts/test.sh starts it first; this keeps `pytest` alone
    working)."""
    from stream.devtools.kafka_local import LocalKafka, _broker_ready, status, up

    s = ToolSettings()
    k = LocalKafka(s.cache_dir, s.kafka_version, s.kafka_port, s.max_message_bytes, s.kafka_heap_opts)
    ok, _ = status(k)
    # A broker started from another checkout's cache (no pid file here) serves as well.
    if not ok and not _broker_ready(s.bootstrap, 5):
        up(k, timeout_s=180)
    return s.bootstrap


@pytest.fixture
def isolated(kafka_bootstrap) -> ToolSettings:
    """ToolSettings whose topics and app id are unique to this test, so tests never see each other's messages."""
    isolated = isolated_settings(ToolSettings(), "t" + uuid.uuid4().hex[:8])
    return isolated.model_copy(update={"partitions": 3})


@pytest.fixture(scope="session")
def recordings():
    from integrations.datasets.recordings import find_recordings

    return find_recordings(SAMPLES)


@pytest.fixture
def model_dir(tmp_path):
    """A model directory that passes the vLLM backend's preconditions (config + encoder file; no weights)."""
    from tests.support.fake_vllm import make_model_dir

    return make_model_dir(tmp_path)


@pytest.fixture
def fake_env(monkeypatch, model_dir):
    """The FAKE vllm module installed (tests/fake_vllm.py): ((model dir, encoder path), plugin registrations)."""
    from tests.support.fake_vllm import install_fake_vllm

    return install_fake_vllm(monkeypatch, model_dir)


@contextlib.contextmanager
def standin_shim(output: str = "lateral-twi", *, load: bool = True, server_options: dict | None = None,
                 **options) -> Iterator[tuple]:
    """The real serving shim (integrations/reasoner/serve.py) on 127.0.0.1 with the STAND-IN generator (replays
    hand-written ECG-R1-format outputs; NOT ECG-R1): yields (server, generator). Faults are set on the generator
    (`generator.set(delay_s=..., fail=True, output=...)`); load=False leaves it loading (every chat answer 503).
    options go to the generator, server_options to ShimServer (max_inflight, max_queue, ...)."""
    from integrations.reasoner.serve import ShimServer, StandinGenerator

    generator = StandinGenerator(output, **options)
    server = ShimServer(generator, port=0, **(server_options or {}))
    with server.running():
        if load:
            server.load()
        yield server, generator


# --- the real FHIR server (HAPI FHIR JPA, stream/devtools/fhir_local.py): one per test session ---

@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    """A CA generated for this session and the server certificate it signed (tests/support/tls.py)."""
    from tests.support.tls import make_pki

    return make_pki(tmp_path_factory.mktemp("pki"))


def _start_hapi(pki, fhir_version: str, **extra):
    from stream.devtools.e2e import free_port
    from stream.devtools.fhir_local import LocalFhir, up
    from tests.support.fhir import STATIC_TOKEN

    s = ToolSettings()
    local = LocalFhir(s.cache_dir, s.fhir_server_hapi_version, port=free_port(), http_port=free_port(),
                      fhir_version=fhir_version, database="file", name=f"test-{fhir_version}-{uuid.uuid4().hex[:8]}",
                      tls_cert=pki.server_cert, tls_key=pki.server_key, static_token=STATIC_TOKEN, secure_only=True,
                      **extra)
    up(local, timeout_s=300)
    return local


@pytest.fixture(scope="session")
def hapi(pki):
    """The session's HAPI FHIR server (R4B): HTTPS with the session CA, where bearer tokens are enforced (the static
    test token, or tokens from the session's Hydra by introspection), and plain HTTP (open) beside it. File-backed
    H2, so a test can restart it. ~0.8 GB, 25-90 s to start."""
    import shutil

    from stream.devtools.e2e import free_port
    from stream.devtools.fhir_local import down
    from tests.support.fhir import TestFhir

    public, admin = free_port(), free_port()
    local = _start_hapi(pki, "R4B", introspection_url=f"http://127.0.0.1:{admin}/admin/oauth2/introspect",
                        token_endpoint=f"http://127.0.0.1:{public}/oauth2/token")
    yield TestFhir(local, pki.ca_cert, pki.other_ca_cert, public, admin)
    down(local)
    shutil.rmtree(local.home, ignore_errors=True)


@pytest.fixture(scope="session")
def hapi_r4(pki):
    """An R4 HAPI server, started only by the tests that compare R4B and R4 consumers."""
    import shutil

    from stream.devtools.fhir_local import down
    from tests.support.fhir import TestFhir

    local = _start_hapi(pki, "R4")
    yield TestFhir(local, pki.ca_cert, pki.other_ca_cert, 0, 0)
    down(local)
    shutil.rmtree(local.home, ignore_errors=True)
