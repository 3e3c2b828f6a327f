"""The dashboard's tests run the real thing: `twiwatch dashboard` as a process (uvicorn, its SQLite store in a temp
folder, its Kafka consumer on topics of this test's own), accounts made with `twiwatch users add`, real report
bundles and analysis messages built by the worker's functions (stream/stages.py) from real ECGs in samples/,
published to the real broker; Chromium through Playwright for the browser tests."""
from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from engine.analyze import analyze
from stream.config import ToolSettings
from stream.devtools.e2e import free_port, settings_env, stop_worker, wait_healthy
from stream.producer import make_producer
from stream.topics import ensure_topics, topic_specs
from tests.support.dashboard_messages import Pair, real_pair
from tests.support.records import SAMPLES

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync"]
ARTEFACTS = ROOT / ".cache" / "test-artefacts" / "dashboard"
PASSWORDS = {"admin": "admin-pass-0123456789", "rev1": "reviewer-one-0123456789", "rev2": "reviewer-two-0123456789"}


@dataclass
class Dashboard:
    url: str
    s: ToolSettings
    proc: subprocess.Popen
    log: Path
    passwords: dict[str, str] = field(default_factory=lambda: dict(PASSWORDS))

    def publish(self, *pairs: Pair, analysis_first: bool = False) -> None:
        """Each pair's report on the reports topic and its analysis message on the analysis topic (keyed by report
        id, acks=all), as the worker writes them."""
        producer = make_producer(self.s, client_id="dashboard-test")
        try:
            for p in pairs:
                sends = [(self.s.topic_reports, p.report, list(p.headers.items())),
                         (self.s.topic_analysis, p.analysis, [])]
                for topic, value, headers in (reversed(sends) if analysis_first else sends):
                    producer.send(topic, key=p.report_id.encode(), value=value, headers=headers).get(timeout=30)
        finally:
            producer.close()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def cli(s: ToolSettings, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stream.cli", *args], env=settings_env(s), input=stdin, text=True,
                          capture_output=True, timeout=120)


def dashboard_settings(isolated: ToolSettings, tmp_path: Path, **extra) -> ToolSettings:
    run = isolated.app_id.rsplit("-", 1)[-1]
    prefix = isolated.topic_reports.split("fhir.diagnosticreport")[0]
    return isolated.model_copy(update={
        "topic_analysis": prefix + "ecg.analysis", "topic_adjudications": prefix + "twiwatch.adjudications",
        "dashboard_group": f"twiwatch-dashboard-{run}-{uuid.uuid4().hex[:6]}", "dashboard_data_dir": tmp_path / "dash",
        "dashboard_port": free_port(), "dashboard_host": "127.0.0.1", "dashboard_timezone": "Europe/Berlin",
        "patient_hash_secret": SecretStr("dashboard-test-secret"), **extra})


def start_dashboard(s: ToolSettings, log: Path, timeout_s: float = 90) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([sys.executable, "-m", "stream.cli", "dashboard"], env=settings_env(s),
                            stdout=open(log, "ab"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        wait_healthy(s, proc, timeout_s, port=s.dashboard_port, app=s.dashboard_group, what="dashboard")
    except (RuntimeError, TimeoutError) as exc:
        stop_worker(proc)
        raise RuntimeError(f"{exc}: {log.read_text(errors='replace')[-3000:]}") from None
    return proc


def add_users(s: ToolSettings) -> None:
    """The three test accounts, straight into the store (test_users_cli covers `twiwatch users add`)."""
    from integrations.dashboard import store
    from stream.dashboard_main import store_url

    url = store_url(s)
    store.migrate(url)
    engine = store.make_engine(url)
    try:
        with store.session_factory(engine)() as session:
            for name, role in (("admin", "admin"), ("rev1", "reviewer"), ("rev2", "reviewer")):
                store.add_user(session, name, role, PASSWORDS[name])
            session.commit()
    finally:
        engine.dispose()


@pytest.fixture
def dashboard(isolated, tmp_path) -> Dashboard:
    s = dashboard_settings(isolated, tmp_path, dashboard_login_attempts=3)
    ensure_topics(s, topic_specs(s))
    add_users(s)
    log = tmp_path / "dashboard.log"
    proc = start_dashboard(s, log)
    yield Dashboard(f"http://127.0.0.1:{s.dashboard_port}", s, proc, log)
    stop_worker(proc)


@pytest.fixture(scope="session")
def pg_admin_url():
    """A throwaway PostgreSQL 15 server for the session (tests/support/postgres.py); skipped with the reason when
    the binaries are missing."""
    from tests.support import postgres

    why = postgres.available()
    if why:
        pytest.skip(why)
    with postgres.postgres_server() as url:
        yield url


@pytest.fixture
def replicas(isolated, tmp_path, pg_admin_url):
    """Two `twiwatch dashboard` processes on one PostgreSQL database, in one consumer group (several replicas)."""
    from tests.support import postgres

    db = postgres.create_database(pg_admin_url, "dash" + uuid.uuid4().hex[:10])
    s = dashboard_settings(isolated, tmp_path, dashboard_db_url=db)
    ensure_topics(s, topic_specs(s))
    add_users(s)
    out = []
    try:
        for i in range(2):
            si = s.model_copy(update={"dashboard_port": free_port()})
            log = tmp_path / f"dashboard-{i}.log"
            out.append(Dashboard(f"http://127.0.0.1:{si.dashboard_port}", si, start_dashboard(si, log), log))
        yield out
    finally:
        for d in out:
            stop_worker(d.proc)


# --- real report/analysis pairs ---

def with_beats(pair: Pair, recording) -> Pair:
    """The analysis message with the engine's per-beat fiducials (t peak/offset per lead, samples from the start
    of the signal), as docs/SPEC.md §13.1 has them."""
    msg = json.loads(pair.analysis)
    result = analyze(recording.load(), [])
    for lead, lr in result.leads.items():
        if lead in msg["analysis"]["leads"]:
            msg["analysis"]["leads"][lead]["beats"] = [dataclasses.asdict(b) for b in lr.beats]
    return dataclasses.replace(pair, analysis=json.dumps(msg, separators=(",", ":")).encode())


@pytest.fixture(scope="session")
def ptbxl():
    from integrations.datasets.recordings import find_recordings

    return {r.record_id: r for r in find_recordings(SAMPLES) if r.dataset == "ptbxl"}


@pytest.fixture(scope="session")
def serial_pairs(ptbxl) -> tuple[Pair, Pair]:
    """PTB-XL patient 641: ECG 266 (no TWI group), then ECG 281 four days later with a new high-lateral TWI group,
    analysed against 266 as its prior (the worker's priors table entry carried over)."""
    first, state = real_pair(ptbxl["266"], unit="CCU", bed="3", broker_ts_ms=1_714_557_600_000)
    m = json.loads(first.analysis)
    prior = {"source_id": m["source_id"], "acquired_at": m["acquired_at"], "report_id": first.report_id}
    second, _ = real_pair(ptbxl["281"], unit="CCU", bed="3", broker_ts_ms=1_714_900_000_000, state=state,
                          prior=prior)
    return with_beats(first, ptbxl["266"]), with_beats(second, ptbxl["281"])


@pytest.fixture(scope="session")
def other_pairs(ptbxl) -> list[Pair]:
    """More real alerts for a fuller queue: PTB-XL 468 (ischemic pattern), 256 (LBBB), 1052 (indeterminate)."""
    beds = {"468": ("ICU", "7"), "256": ("ED", "2"), "1052": ("CCU", "5")}
    return [with_beats(real_pair(ptbxl[rid], unit=unit, bed=bed, broker_ts_ms=1_714_600_000_000 + i * 60_000)[0],
                       ptbxl[rid]) for i, (rid, (unit, bed)) in enumerate(beds.items())]


def reasoned_version(pair: Pair, recording) -> Pair:
    """Version 2 of a report as the worker writes it after the reasoner: the engine's real cross-check of the
    ECG-R1 STAND-IN's canned "lateral-twi" output (integrations/reasoner/standin_outputs.json; not the model)
    against this ECG's measurements, with each claim's verdict; and an encoder-head opinion that disagrees with the
    criteria (hand-written test input: the head is not run here)."""
    from datetime import timedelta

    from engine.reasoner import cross_check, parse_reasoning
    from engine.reasoner.crosscheck import describe
    from integrations.reasoner.standin import OUTPUTS_PATH
    from tests.support.dashboard_messages import replicate

    text = next(o["text"] for o in json.loads(OUTPUTS_PATH.read_text())["outputs"] if o["id"] == "lateral-twi")
    parsed = parse_reasoning(text, "stop")
    cc = cross_check(parsed, analyze(recording.load(), []))
    msg = json.loads(pair.analysis)
    v2 = replicate(pair, report_id=pair.report_id, mrn=msg["patient"]["mrn"], unit=msg["location"]["unit"],
                   bed=msg["location"]["bed"], shift=timedelta(0), version=2, own_source=False)
    msg2 = json.loads(v2.analysis)
    msg2["reasoning"] = {
        "model": "ECG-R1 STAND-IN (canned output, not the model)", "version": "standin", "status": "completed",
        "answer": list(parsed.labels), "cross_check": cc.lines(),
        "claims": [{"text": c.text, "summary": describe(c), "kind": c.kind, "leads": c.leads, "hedged": c.hedged,
                    "verdict": c.verdict, "evidence": c.evidence} for c in cc.claims]}
    msg2["head"] = {"model": "triage-s50", "twi_present": 0.91, "ischemic_vs_secondary": 0.78,
                    "disagreement": "the head scores an ischaemic pattern where the criteria name LVH strain"}
    return dataclasses.replace(v2, analysis=json.dumps(msg2, separators=(",", ":")).encode())


# --- HTTP helpers ---

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    m = CSRF.search(html)
    assert m, "no CSRF field on the page"
    return m.group(1)


def login(base_url: str, name: str, password: str) -> httpx.Client:
    client = httpx.Client(base_url=base_url, follow_redirects=False, timeout=30)
    page = client.get("/login")
    r = client.post("/login", data={"username": name, "password": password, "csrf": csrf_of(page.text),
                                    "next": "/"})
    assert r.status_code == 303, (r.status_code, r.text[:500])
    return client


def wait_for_alert(client: httpx.Client, report_id: str, timeout_s: float = 60) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        items = client.get("/api/alerts", params={"limit": 500}).json()["items"]
        found = [i for i in items if i["id"] == report_id]
        if found:
            return found[0]
        time.sleep(0.3)
    raise AssertionError(f"alert {report_id} not in the queue after {timeout_s} s")
