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
    from stream.devtools.kafka_local import LocalKafka, status, up

    s = ToolSettings()
    k = LocalKafka(s.cache_dir, s.kafka_version, s.kafka_port, s.max_message_bytes, s.kafka_heap_opts)
    ok, _ = status(k)
    if not ok:
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
    """The real serving shim (engine/reasoner/serve.py) on 127.0.0.1 with the STAND-IN generator (replays
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
