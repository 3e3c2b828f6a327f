"""`twiwatch dashboard` over HTTP with real report bundles and analysis messages on the real broker: access rules,
headers, the queue API, actions with optimistic locking and CSRF, the outbox to the adjudications topic, dead
letters, idempotent redelivery, /healthz and /metrics."""
from __future__ import annotations

import json
import time

import httpx
import pytest
from kafka import KafkaConsumer

from stream.deadletter import read_headers
from tests.dashboard.conftest import cli, csrf_of, login, reasoned_version, wait_for_alert

pytestmark = pytest.mark.kafka


def _read_topic(s, topic: str, n: int, timeout_s: float = 30) -> list:
    consumer = KafkaConsumer(topic, bootstrap_servers=s.bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=1000)
    got: list = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(got) < n and time.monotonic() < deadline:
            got += list(consumer)
    finally:
        consumer.close()
    return got


def test_anonymous_visitors_go_to_login_and_health_is_open(dashboard):
    c = httpx.Client(base_url=dashboard.url, follow_redirects=False, timeout=10)
    for path in ("/", "/alerts/anything", "/api/alerts", "/admin/users", "/admin/export.csv", "/events"):
        r = c.get(path)
        assert r.status_code == 303 and r.headers["location"].startswith("/login"), path
    page = c.get("/login")
    assert page.status_code == 200
    assert 'name="username"' in page.text and 'name="password"' in page.text
    assert "RESEARCH USE ONLY" in page.text
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert page.headers["x-frame-options"] == "DENY" and page.headers["x-content-type-options"] == "nosniff"
    cookie = page.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    health = c.get("/healthz")
    assert health.status_code == 200 and health.json()["store"] == "ok", health.text
    assert "polling" in health.json()["consumer"]
    assert "twiwatch_dashboard_request_seconds" in c.get("/metrics").text


def test_login_refuses_bad_passwords_then_rate_limits(dashboard):
    c = httpx.Client(base_url=dashboard.url, follow_redirects=False, timeout=10)
    codes = []
    for _ in range(4):
        form = c.get("/login")
        codes.append(c.post("/login", data={"username": "rev1", "password": "wrong-password-1234",
                                            "csrf": csrf_of(form.text)}).status_code)
    assert codes[:3] == [401, 401, 401] and codes[3] == 429  # TWIWATCH_DASHBOARD_LOGIN_ATTEMPTS=3
    form = c.get("/login")  # even the right password waits out the window
    r = c.post("/login", data={"username": "rev1", "password": dashboard.passwords["rev1"],
                               "csrf": csrf_of(form.text)})
    assert r.status_code == 429
    # A POST without the form's token is refused whatever the password.
    fresh = httpx.Client(base_url=dashboard.url, follow_redirects=False, timeout=10)
    r = fresh.post("/login", data={"username": "rev2", "password": dashboard.passwords["rev2"]})
    assert r.status_code == 403


def test_reports_become_alerts_and_actions_are_locked_audited_and_published(dashboard, serial_pairs, ptbxl):
    first, second = serial_pairs
    # The analysis message may come before its report (different topics); a redelivery changes nothing.
    dashboard.publish(first, second, analysis_first=True)
    dashboard.publish(second)
    rev1 = login(dashboard.url, "rev1", dashboard.passwords["rev1"])
    rev2 = login(dashboard.url, "rev2", dashboard.passwords["rev2"])
    item = wait_for_alert(rev1, second.report_id)
    assert set(item) >= {"id", "mrn", "bed", "class", "novelty", "time", "state", "version"}
    assert item["class"] == second.cls and item["state"] == "new" and item["bed"] == "3"
    assert item["novelty"] == "new"
    # 266 has no TWI group: browsable, never queued.
    ids = [i["id"] for i in rev1.get("/api/alerts").json()["items"]]
    assert ids.count(second.report_id) == 1 and first.report_id not in ids

    page = rev1.get(f"/alerts/{second.report_id}")
    assert page.status_code == 200
    html = page.text
    assert "RESEARCH USE ONLY" in html and item["mrn"] in html
    assert html.count('class="ecg"') == 2  # this ECG and its prior
    assert "(UTC+0" in html  # times in Europe/Berlin with the offset
    form_rev1 = csrf_of(html)
    page2 = rev2.get(f"/alerts/{second.report_id}")
    form_rev2 = csrf_of(page2.text)
    row_version = int(page2.text.split('name="row_version" value="')[1].split('"')[0])

    # No CSRF token: refused, nothing changes.
    r = rev1.post(f"/alerts/{second.report_id}/acknowledge", data={"row_version": row_version})
    assert r.status_code == 403
    # rev1 acknowledges; rev2's form (same row version) is stale and overwrites nothing.
    r = rev1.post(f"/alerts/{second.report_id}/acknowledge", data={"row_version": row_version, "csrf": form_rev1})
    assert r.status_code == 303
    r = rev2.post(f"/alerts/{second.report_id}/adjudicate", data={
        "row_version": row_version, "csrf": form_rev2, "verdict": "disagree", "note": "stale form"})
    assert r.status_code == 409 and "changed by someone else" in r.text
    fresh = rev2.get(f"/alerts/{second.report_id}").text
    new_version = int(fresh.split('name="row_version" value="')[1].split('"')[0])
    r = rev2.post(f"/alerts/{second.report_id}/adjudicate", data={
        "row_version": new_version, "csrf": form_rev2, "verdict": "agree-secondary", "cause": "lvh-strain",
        "note": "voltage criteria and strain pattern"})
    assert r.status_code == 303, r.text[:300]
    now = wait_for_alert(rev1, second.report_id)
    assert now["state"] == "adjudicated"

    # Published through the outbox: the acknowledgement and the adjudication, pseudonymous, research-only.
    msgs = _read_topic(dashboard.s, dashboard.s.topic_adjudications, 2)
    values = [json.loads(m.value) for m in msgs]
    assert [v["action"] for v in values] == ["acknowledge", "adjudicate"]
    assert all(m.key == second.report_id.encode() for m in msgs)
    assert values[1]["verdict"] == "agree-secondary" and values[1]["cause"] == "lvh-strain"
    assert all(v["research_only"] is True and v["reviewer"] not in ("rev1", "rev2") for v in values)
    assert len({v["action_id"] for v in values}) == 2

    # The audit trail (admins only) names who, what and from where.
    assert rev1.get("/admin/audit").status_code == 403
    admin = login(dashboard.url, "admin", dashboard.passwords["admin"])
    audit = admin.get("/admin/audit").text
    assert "view-report" in audit and "127.0.0.1" in audit and "rev2" in audit
    export = admin.get("/admin/export.csv")
    assert export.status_code == 200 and "agree-secondary" in export.text and "research" in export.text.lower()
    assert admin.get("/admin/agreement").status_code == 200

    # Version 2 (the reasoner's claims, the head disagreeing) reopens the adjudicated alert, marked as changed.
    v2 = reasoned_version(second, ptbxl["281"])
    dashboard.publish(v2)
    deadline = time.monotonic() + 30
    while (now := wait_for_alert(rev1, second.report_id))["version"] != 2 and time.monotonic() < deadline:
        time.sleep(0.3)
    assert now["state"] == "new" and now["changed_since_adjudication"] is True, now
    deadline = time.monotonic() + 30
    while "verdict-" not in (html := rev1.get(f"/alerts/{second.report_id}").text) and time.monotonic() < deadline:
        time.sleep(0.3)
    verdicts = json.loads(v2.analysis)["reasoning"]["claims"]
    assert html.count('class="claim verdict-') == len(verdicts) > 0
    for v in {c["verdict"] for c in verdicts}:
        assert f"verdict-{v}" in html
    assert "Disagrees with the criteria" in html and "changed since adjudication" in html
    # No patient identifier in the process's log.
    assert item["mrn"] not in dashboard.log_text()


def test_bad_messages_go_to_the_dead_letter_topic_and_the_dashboard_keeps_going(dashboard, serial_pairs):
    from stream.producer import make_producer

    s = dashboard.s
    producer = make_producer(s, client_id="dashboard-test-bad")
    producer.send(s.topic_reports, key=b"x", value=b"{not json", headers=[("twiwatch.report-id", b"x")]).get(30)
    producer.send(s.topic_analysis, key=b"y", value=b'{"schema": "something-else/9"}').get(30)
    producer.close()
    _, second = serial_pairs
    dashboard.publish(second)
    letters = _read_topic(s, s.topic_deadletter, 2)
    metas = [read_headers(m.headers) for m in letters]
    assert len(metas) == 2 and {m["source.topic"] for m in metas} == {s.topic_reports, s.topic_analysis}
    assert all(m["reason"] and m["error.class"] == "dashboard-ingest" for m in metas)
    client = login(dashboard.url, "rev1", dashboard.passwords["rev1"])
    assert wait_for_alert(client, second.report_id)["state"] == "new"
    assert dashboard.proc.poll() is None
    metrics = httpx.get(f"{dashboard.url}/metrics").text
    assert 'outcome="deadletter"' in metrics and 'twiwatch_dashboard_alerts{state="new"} 1.0' in metrics
    assert 'twiwatch_dashboard_outbox_pending 0.0' in metrics


def test_users_cli_adds_lists_and_disables(dashboard):
    added = cli(dashboard.s, "users", "add", "rev3", "--role", "reviewer", "--password-stdin",
                stdin="reviewer-three-0123456789\n")
    assert added.returncode == 0, added.stderr
    login(dashboard.url, "rev3", "reviewer-three-0123456789")
    listed = cli(dashboard.s, "users", "list")
    assert listed.returncode == 0 and "rev1\treviewer\tactive" in listed.stdout
    again = cli(dashboard.s, "users", "add", "rev1", "--role", "reviewer", "--password-stdin",
                stdin="another-password-123\n")
    assert again.returncode != 0
    client = login(dashboard.url, "rev2", dashboard.passwords["rev2"])
    assert client.get("/").status_code == 200
    assert cli(dashboard.s, "users", "disable", "rev2").returncode == 0
    assert client.get("/").status_code == 303  # its session ended with the account
    assert "rev2\treviewer\tdisabled" in cli(dashboard.s, "users", "list").stdout


def test_an_episode_alert_shows_its_trend_and_windows(dashboard, ptbxl):
    """A monitor episode's report (integrations/fhir/episode.py) and its §13.1 message: a real ECG stands in for
    the opening window; the trend is a falling T amplitude in II and III across the baseline and the episode."""
    from tests.dashboard.conftest import Pair
    from tests.integrations.dashboard_store.test_episodes import START, EpisodeEvent, _episode
    from tests.support.dashboard_messages import signal_of

    rid = "episode-web-1"
    value, headers = _episode(EpisodeEvent("opened", 1, START + 300), rid)
    trend = [{"t": f"2024-05-01T{9 + (m + 50) // 60:02d}:{(m + 50) % 60:02d}:00Z",
              "lead": {"II": {"t_mv": 0.25 - (0.006 * m if m > 10 else 0), "st_j60_mv": 0.0, "quality": "ok"},
                       "III": {"t_mv": 0.2 - (0.005 * m if m > 10 else 0), "st_j60_mv": 0.0, "quality": "ok"}}}
             for m in range(0, 20)]
    msg = {"schema": "twiwatch.analysis/1", "kind": "episode", "research_only": True, "report_id": rid, "version": 1,
           "status": "preliminary", "issued": "2024-05-01T10:05:00Z", "source_id": "gw|dev1|bed4",
           "acquired_at": None, "patient": {"mrn": "MRN-77", "system": "urn:oid:1.2.3"}, "signal": None,
           "location": {"unit": "CCU", "bed": "4", "device": "dev1"}, "analysis": None, "prior": None,
           "head": None, "reasoning": None,
           "episode": {"episode_id": "ep-1", "stream": "s", "event": "opened", "state": "open",
                       "start": "2024-05-01T10:00:00Z", "end": None, "leads": ["II", "III"],
                       "depth_mv": {"II": 0.21, "III": 0.18}, "baseline_mv": {"II": 0.25, "III": 0.2},
                       "baseline_source": "monitoring", "trend": trend,
                       "windows": {"opened": signal_of(ptbxl["143"].load()), "closed": None}}}
    dashboard.publish(Pair(rid, 1, "episode", value, headers, json.dumps(msg).encode(), int(START * 1000)))
    client = login(dashboard.url, "rev1", dashboard.passwords["rev1"])
    item = wait_for_alert(client, rid)
    assert item["class"] == "episode" and item["mrn"] == "MRN-77"
    deadline = time.monotonic() + 30
    while 'id="figure-trend"' not in (html := client.get(f"/alerts/{rid}").text) and time.monotonic() < deadline:
        time.sleep(0.3)  # the analysis message may be ingested a moment after the report
    assert 'id="figure-trend"' in html and 'class="episode-span"' in html and 'class="trend-baseline"' in html
    assert 'id="figure-opened"' in html and html.count('class="ecg"') == 1
    assert "still open" in html and "RESEARCH USE ONLY" in html
    grouped = client.get("/", params={"group": "episode"}).text
    assert "Episode ep-1 (1)" in grouped

    # Version 2 of a 12-lead episode: the encoder head on the opening window and ECG-R1's reading of it, checked
    # against that window's measurements (stream/monitor/stage.py writes them as a strip's version 2 carries them).
    from engine.analyze import analyze
    from engine.reasoner import cross_check, parse_reasoning
    from engine.reasoner.crosscheck import describe
    from integrations.reasoner.standin import OUTPUTS_PATH

    text = next(o["text"] for o in json.loads(OUTPUTS_PATH.read_text())["outputs"] if o["id"] == "lateral-twi")
    parsed = parse_reasoning(text, "stop")
    cc = cross_check(parsed, analyze(ptbxl["143"].load(), []))
    value2, headers2 = _episode(EpisodeEvent("updated", 2, START + 330), rid)
    msg2 = {**msg, "version": 2, "issued": "2024-05-01T10:06:00Z",
            "head": {"model": "triage-s50", "twi_present": 0.88, "ischemic_vs_secondary": 0.7},
            "reasoning": {"model": "ECG-R1 STAND-IN (canned output, not the model)", "version": "standin",
                          "status": "completed", "answer": list(parsed.labels), "cross_check": cc.lines(),
                          "claims": [{"text": c.text, "summary": describe(c), "kind": c.kind, "leads": c.leads,
                                      "hedged": c.hedged, "verdict": c.verdict, "evidence": c.evidence}
                                     for c in cc.claims]}}
    dashboard.publish(Pair(rid, 2, "episode", value2, headers2, json.dumps(msg2).encode(), int(START * 1000) + 1))
    deadline = time.monotonic() + 30
    while 'id="head"' not in (html := client.get(f"/alerts/{rid}").text) and time.monotonic() < deadline:
        time.sleep(0.3)
    assert 'id="head"' in html and 'class="claims"' in html and 'id="figure-trend"' in html
    assert any(f"verdict-{c.verdict}" in html for c in cc.claims)


@pytest.mark.postgres
def test_two_replicas_on_postgresql_share_alerts_locks_and_live_changes(replicas, serial_pairs):
    a, b = replicas
    first, second = serial_pairs
    rev1 = login(a.url, "rev1", a.passwords["rev1"])
    rev2 = login(b.url, "rev2", b.passwords["rev2"])
    seq_b = int(rev2.get("/").text.split('data-seq="')[1].split('"')[0])
    a.publish(first, second)
    # Whichever replica's consumer took the partitions, both serve the alert and B's change feed carries it.
    assert wait_for_alert(rev1, second.report_id)["state"] == "new"
    assert wait_for_alert(rev2, second.report_id)["state"] == "new"
    with rev2.stream("GET", "/events", params={"since": seq_b}, timeout=10) as events:
        body = ""
        for chunk in events.iter_text():
            body += chunk
            if "event: change" in body and second.report_id in body:
                break
    assert second.report_id in body
    page_a, page_b = rev1.get(f"/alerts/{second.report_id}").text, rev2.get(f"/alerts/{second.report_id}").text
    version = int(page_a.split('name="row_version" value="')[1].split('"')[0])
    r = rev1.post(f"/alerts/{second.report_id}/acknowledge", data={"row_version": version, "csrf": csrf_of(page_a)})
    assert r.status_code == 303
    r = rev2.post(f"/alerts/{second.report_id}/adjudicate", data={
        "row_version": version, "csrf": csrf_of(page_b), "verdict": "artifact", "note": ""})
    assert r.status_code == 409 and "changed by someone else" in r.text
    msgs = _read_topic(a.s, a.s.topic_adjudications, 1)
    assert {json.loads(m.value)["action"] for m in msgs} == {"acknowledge"}
    assert len({json.loads(m.value)["action_id"] for m in msgs}) == 1
    for d in replicas:
        assert httpx.get(f"{d.url}/healthz").status_code == 200


def test_a_report_without_twi_is_browsable_not_actionable(dashboard, serial_pairs):
    first, _ = serial_pairs
    dashboard.publish(first)
    client = login(dashboard.url, "rev1", dashboard.passwords["rev1"])
    deadline = time.monotonic() + 60
    while (page := client.get(f"/alerts/{first.report_id}")).status_code == 404 and time.monotonic() < deadline:
        time.sleep(0.3)
    assert page.status_code == 200 and 'id="not-an-alert"' in page.text and 'id="adjudicate-form"' not in page.text
    assert page.text.count('class="ecg"') == 1  # its own ECG, no prior
    assert first.report_id not in [i["id"] for i in client.get("/api/alerts").json()["items"]]
