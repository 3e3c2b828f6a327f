"""The dashboard's pages over HTTP at 10,000 alerts: `python -m bench.dashboard [--n 10000] [--repeats 200]
[--backends sqlite,postgres] [--json PATH]` (issue 14 goals: alert page p95 < 300 ms, queue p95 < 200 ms, warm).

The store is seeded as bench/dashboard_store.py does (six real PTB-XL ECGs analysed by the worker's own functions,
replicated to `--n` alerts with their report bundles and analysis messages, 40 % acknowledged or adjudicated). The web
app then runs in its own process (uvicorn, as `twiwatch dashboard` serves it, without the Kafka consumer) and this
process logs in and times, with one keep-alive HTTP client, each request `--repeats` times after 10 warm-up requests:
- queue: `GET /` (first page, 50 rows), `GET /?class=secondary&unit=ICU`, `GET /?cursor=...` (past 90 % of the
  queue), `GET /api/alerts`;
- alert: `GET /alerts/<random alert>` (the 12-lead ECG drawn as SVG, measures, evidence, history; 500 Hz records).
Printed as JSON: p50/p95/max in ms per request kind, and whether each goal was met. Times are the client's (request
sent to body read) on the same machine.
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import httpx

from bench.dashboard_store import ECGS, on_backends, real_sources, seed
from integrations.dashboard.store import AlertFilter, add_user, list_alerts, make_engine, migrate, session_factory

GOALS_MS = {"queue": 200.0, "alert": 300.0}
USER, PASSWORD = "bench-web", "bench-web-passphrase"


def serve(url: str, port: int) -> None:
    """The web app on 127.0.0.1:port over this store (the --serve mode of this module, run as a subprocess)."""
    import uvicorn

    from integrations.dashboard.web.app import create_app
    from integrations.dashboard.web.config import WebConfig

    app = create_app(WebConfig(identity_secret="bench-identity-secret"), make_engine(url))
    uvicorn.run(app, host="127.0.0.1", port=port, access_log=False, log_level="warning")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_up(base: str, proc: subprocess.Popen, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the web app exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError("the web app did not answer /healthz")


def _login(base: str) -> httpx.Client:
    client = httpx.Client(base_url=base, timeout=30)
    page = client.get("/login").text
    csrf = page.split('name="csrf" value="')[1].split('"')[0]
    r = client.post("/login", data={"username": USER, "password": PASSWORD, "csrf": csrf}, follow_redirects=False)
    if r.status_code != 303:
        raise RuntimeError(f"bench login refused ({r.status_code})")
    return client


def _timed(client: httpx.Client, paths, repeats: int) -> dict[str, float]:
    for _ in range(10):
        client.get(next(paths)).raise_for_status()
    ms = []
    for _ in range(repeats):
        path = next(paths)
        started = time.perf_counter()
        r = client.get(path)
        r.read()
        ms.append((time.perf_counter() - started) * 1000)
        r.raise_for_status()
    ms.sort()
    return {"p50_ms": round(statistics.median(ms), 1), "p95_ms": round(ms[int(0.95 * (len(ms) - 1))], 1),
            "max_ms": round(ms[-1], 1)}


def _repeat(path: str):
    while True:
        yield path


def run_backend(url: str, sources: list[Any], n: int, repeats: int) -> dict[str, Any]:
    migrate(url)
    engine = make_engine(url)
    factory = session_factory(engine)
    seeded = seed(factory, sources, n)
    with factory() as s:
        add_user(s, USER, "reviewer", PASSWORD)
        s.commit()
        cursor, seen = None, 0
        while seen < 0.9 * n:
            page, cursor = list_alerts(s, AlertFilter(), cursor, max(1, min(500, n // 20)))
            seen += len(page)
    engine.dispose()
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "bench.dashboard", "--serve", url, "--port", str(port)])
    try:
        _wait_up(base, proc)
        client = _login(base)
        rng = random.Random(11)

        def alerts():
            while True:
                yield f"/alerts/bench{rng.randrange(n):06d}"

        out: dict[str, Any] = {"seed": seeded}
        out["queue_first_page"] = _timed(client, _repeat("/"), repeats)
        out["queue_filtered"] = _timed(client, _repeat("/?class=secondary&unit=ICU"), repeats)
        out["queue_deep_page"] = _timed(client, _repeat(f"/?cursor={cursor}"), repeats)
        out["api_alerts"] = _timed(client, _repeat("/api/alerts"), repeats)
        out["alert_page"] = _timed(client, alerts(), repeats)
        size = client.get("/alerts/bench000001")
        out["alert_page_bytes"] = len(size.content)
        queue_p95 = max(out[k]["p95_ms"] for k in ("queue_first_page", "queue_filtered", "queue_deep_page"))
        out["goals"] = {"queue_p95_ms": queue_p95, "queue_goal_met": queue_p95 < GOALS_MS["queue"],
                        "alert_p95_ms": out["alert_page"]["p95_ms"],
                        "alert_goal_met": out["alert_page"]["p95_ms"] < GOALS_MS["alert"]}
        client.close()
        return out
    finally:
        proc.terminate()
        proc.wait(30)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=200)
    ap.add_argument("--backends", default="sqlite,postgres")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--serve", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve:
        serve(args.serve, args.port)
        return 0
    sources = real_sources()
    result: dict[str, Any] = {"research_only": True, "n": args.n, "repeats": args.repeats,
                              "sources": [f"ptbxl:{e} {p.cls}" for e, p in zip(ECGS, sources, strict=True)]}
    result.update(on_backends(args.backends.split(","), lambda url: run_backend(url, sources, args.n, args.repeats),
                              "benchweb"))
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
