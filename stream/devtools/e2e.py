"""`twiwatch e2e`: the whole path on the running Kafka, measured.

Isolated per run: topics and the worker's consumer group carry a run prefix, so an e2e run neither sees nor
disturbs a demo (or an earlier run) on the same broker. With `--fhir-server` the run also starts a FHIR server (a
fresh in-memory HAPI, stream/devtools/fhir_local.py, unless one is given) and the FHIR sink, and judges what reached
the server (stream/devtools/fhir_outputs.py).
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

from integrations.identity import patient_key
from stream.config import ToolSettings
from stream.devtools.badinput import BadCase, corpus
from stream.devtools.outputs import Collected, _consumer, _read_all, collect, summarise, wait_for
from stream.devtools.replay import Outgoing, load_recordings, messages, send_all
from stream.producer import make_producer
from stream.topics import ensure_topics, topic_specs


def isolated_settings(base: ToolSettings, run_id: str) -> ToolSettings:
    prefix = f"e2e-{run_id}."
    return base.model_copy(update={
        "topic_hl7_raw": prefix + base.topic_hl7_raw,
        "topic_fhir_raw": prefix + base.topic_fhir_raw,
        "topic_reports": prefix + base.topic_reports,
        "topic_deadletter": prefix + base.topic_deadletter,
        "topic_reasoning": prefix + base.topic_reasoning,
        "topic_chunks": prefix + base.topic_chunks,
        "topic_trends": prefix + base.topic_trends,
        "topic_analysis": prefix + base.topic_analysis,
        "topic_prior_summaries": prefix + base.topic_prior_summaries,
        "topic_delivery_deadletter": prefix + base.topic_delivery_deadletter,
        "app_id": f"twiwatch-e2e-{run_id}",
        "fhir_sink_group_id": f"twiwatch-e2e-{run_id}-fhir-sink",
        "data_dir": base.cache_dir / "e2e" / run_id,
        "worker_web_port": free_port(),
        "fhir_sink_web_port": free_port(),
    })


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def settings_env(s: ToolSettings) -> dict[str, str]:
    """The settings as TWIWATCH_* variables, for a worker subprocess."""
    env = dict(os.environ)
    for name, value in s.model_dump().items():
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        env[f"TWIWATCH_{name.upper()}"] = str(value)
    return env


def start_worker(s: ToolSettings, log_path: Path, command: str = "worker") -> subprocess.Popen:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "ab")
    return subprocess.Popen(
        [sys.executable, "-m", "stream.cli", command], env=settings_env(s), stdout=log, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL, start_new_session=True,
    )


def start_sink(s: ToolSettings, log_path: Path) -> subprocess.Popen:
    """`twiwatch fhir-sink` with these settings (TWIWATCH_FHIR_SINK_URL etc.)."""
    return start_worker(s, log_path, command="fhir-sink")


def wait_healthy(s: ToolSettings, proc: subprocess.Popen, timeout_s: float = 120, *, port: int | None = None,
                 app: str | None = None, what: str = "worker") -> None:
    """Block until the process's /healthz says ready (worker: partitions assigned, state restored; sink: the
    FHIR server's capabilities checked and consuming)."""
    url = f"http://127.0.0.1:{port or s.worker_web_port}/healthz"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} before it was ready")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                # The app id guards against another process that happens to hold the port.
                if resp.status == 200 and json.loads(resp.read()).get("app") == (app or s.app_id):
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{what} not ready after {timeout_s:.0f} s ({url})")


def wait_sink_ready(s: ToolSettings, proc: subprocess.Popen, timeout_s: float = 120) -> None:
    wait_healthy(s, proc, timeout_s, port=s.fhir_sink_web_port, app=s.fhir_sink_group_id, what="FHIR sink")


def stop_worker(proc: subprocess.Popen, timeout_s: float = 30) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class E2EResult:
    summary: dict  # exactly the keys issue 2 names
    details: dict
    settings: ToolSettings
    sent: list[Outgoing]  # the valid messages, in send order
    bad: list[BadCase]
    collected: Collected


def run_e2e(base: ToolSettings, n_messages: int, source: Path, timeout_s: float = 300, log=print,
            isolate: bool = True, rate: float | None = None, fhir_server: bool = False,
            fhir_url: str | None = None) -> E2EResult:
    """fhir_server: also deliver to a FHIR server through the sink: `fhir_url` (its settings, e.g. auth, from
    `base`), or a fresh in-memory local HAPI started for the run."""
    run_id = uuid.uuid4().hex[:8]
    s = isolated_settings(base, run_id) if isolate else base
    ensure_topics(s, topic_specs(s))
    with contextlib.ExitStack() as stack:
        if fhir_server:
            s = stack.enter_context(_fhir_delivery(s, run_id, fhir_url, log))
        return _run(s, run_id, n_messages, source, timeout_s, log, rate, fhir_server)


@contextlib.contextmanager
def _fhir_delivery(s: ToolSettings, run_id: str, fhir_url: str | None, log):
    """A FHIR server (started here unless given) and the sink delivering the run's reports to it."""
    from stream.devtools import fhir_local

    local = None
    if not fhir_url:
        local = fhir_local.from_settings(s, port=free_port(), database="memory", name=f"e2e-{run_id}")
        log(f"starting a FHIR server for the run (HAPI {local.hapi_version}, {local.fhir_version}; 25-90 s)")
        log(fhir_local.up(local))
        fhir_url = local.base_url
    s = s.model_copy(update={"fhir_sink_url": fhir_url})
    sink = start_sink(s, s.cache_dir / "e2e" / f"fhir-sink-{run_id}.log")
    try:
        wait_sink_ready(s, sink)
        log(f"FHIR sink pid {sink.pid} delivering to {fhir_url}")
        yield s
    finally:
        stop_worker(sink)
        if local is not None:
            fhir_local.down(local)
            shutil.rmtree(local.home, ignore_errors=True)


def _run(s: ToolSettings, run_id: str, n_messages: int, source: Path, timeout_s: float, log, rate: float | None,
         fhir_server: bool) -> E2EResult:
    worker = start_worker(s, s.cache_dir / "e2e" / f"worker-{run_id}.log")
    log(f"e2e run {run_id}: worker pid {worker.pid}, topics prefixed e2e-{run_id}.")
    wait_healthy(s, worker)
    try:
        recordings = load_recordings(source)
        producer = make_producer(s, client_id=f"twiwatch-e2e-{run_id}")
        try:
            good = list(messages(recordings, "mixed", s, count=n_messages, run_id=run_id))
            bad = corpus(recordings[0].load(), f"{run_id}-bad", s.max_message_bytes, s.fhir_version)
            # Interleave the bad among the good: a bad message must never hold up the ones behind it.
            bad_out = [Outgoing(s.topic_hl7_raw if b.fmt == "hl7" else s.topic_fhir_raw,
                                patient_key(f"bad-{i}", s.patient_hash_secret.get_secret_value()).encode(),
                                b.value, b.fmt, b.name, b.name) for i, b in enumerate(bad)]
            stream_items, step = [], max(1, len(good) // max(1, len(bad_out)))
            for i, item in enumerate(good):
                stream_items.append(item)
                if i % step == 0 and bad_out:
                    stream_items.append(bad_out.pop(0))
            stream_items.extend(bad_out)
            send_all(producer, stream_items, s, rate=rate)
        finally:
            producer.close()
        sent_valid, sent_invalid = len(good), len(bad)
        log(f"sent {sent_valid} valid and {sent_invalid} invalid messages; waiting for the worker")
        got = wait_for(s, sent_valid, sent_invalid, timeout_s)
        if worker.poll() is not None:
            log(f"worker exited early with code {worker.returncode}")
        time.sleep(2.0)  # let anything in flight land before the final count (duplicates show up late)
        got = collect(s)
        summary, details = summarise(got, s, sent_valid, sent_invalid)
        analysis = read_analysis(s)
        summary["analysis_messages"] = len({(a["report_id"], a["version"]) for a in analysis})
        details["analysis_copies"] = len(analysis) - summary["analysis_messages"]
        if fhir_server:
            from stream.devtools.fhir_outputs import wait_delivered
            from stream.fhir_sink_main import build_client

            log("waiting for the FHIR sink to deliver every report's latest version")
            with build_client(s) as client:
                delivery, more = wait_delivered(client, lambda: collect(s).reports, timeout_s)
            summary.update(delivery)
            details.update(more)
        return E2EResult(summary, details, s, good, bad, got)
    finally:
        stop_worker(worker)


def read_analysis(s: ToolSettings) -> list[dict]:
    """Every message on the analysis topic so far: {"report_id", "version", "key", "value", "message"}."""
    consumer = _consumer(s)
    try:
        out = []
        for r in _read_all(consumer, s.topic_analysis):
            message = json.loads(r.value)
            out.append({"report_id": message["report_id"], "version": message["version"], "key": r.key,
                        "value": r.value, "message": message})
        return out
    finally:
        consumer.close()


def write_summary(summary: dict, path: Path) -> None:
    path.write_text(json.dumps(summary, indent=2) + "\n")
