"""The dashboard store's queue at 10,000 alerts: `python -m bench.dashboard_store [--n 10000] [--repeats 200]
[--backends sqlite,postgres] [--json PATH]` (issue 14; docs/SPEC.md §13.2).

Seeding: six real ECGs from samples/ptbxl (PTB-XL 468 ischemic-pattern, 256 secondary:lbbb, 140 secondary:lvh-strain,
143 secondary:ventricular-pacing, 1052 indeterminate, 1514 ischemic-pattern) are analysed by the worker's own
functions (stream/stages.py analyse_only + first_report: the real report bundle, ~48 kB) and given a minimal §13.1
analysis message (tests/support/dashboard_messages.py: the engine's Analysis and the record's signal). Each alert i
is ECG i mod 6 replicated (tests/support `replicate`, done as byte substitutions checked against it) under its own
report id, patient (MRN i mod 997), unit (3), bed (12) and time (7 min
apart), both messages ingested through ingest_report / ingest_analysis, committed every 500 alerts. The copies keep
their ECG's source id, so the signal is stored 6 times, not 10,000 (the bundles and analyses are all stored).
Then 20 % of the alerts are acknowledged and 20 % adjudicated through actions.py (with their audit and outbox
rows), so the queue holds all three states.

Measured, each `--repeats` times in a fresh session (one session per call, as one web request), on SQLite (a file
in a temporary folder, WAL) and on a throwaway PostgreSQL 15 (tests/support/postgres.py, fsync off):
- baseline: `SELECT 1` (the round trip every query pays);
- first_page: list_alerts(no filter, no cursor, limit 50);
- deep_page: list_alerts with the cursor reached after paging past 90 % of the queue (keyset: no OFFSET);
- filtered: list_alerts(unit=ICU, cls=secondary), (cls=indeterminate), (state=adjudicated), (patient=<an MRN>);
- alert_detail of a random alert (report + observations, analysis with signal, prior, versions, actions).
Printed as JSON: p50/p95 in ms and each p50 as a ratio of the baseline's p50 in the same run, the seeding rate, and
the query plans of the first, deep and two filtered pages (EXPLAIN QUERY PLAN / EXPLAIN) to show which index
serves each.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text

from integrations.dashboard.store import (
    AlertFilter,
    acknowledge,
    add_user,
    adjudicate,
    alert_detail,
    ingest_analysis,
    ingest_report,
    list_alerts,
    make_engine,
    migrate,
    session_factory,
)
from integrations.dashboard.store.queue import alert_query
from tests.support.dashboard_messages import replicate

ECGS = ("468", "256", "140", "143", "1052", "1514")
SECRET = "bench-identity-secret"


def real_sources() -> list[Any]:
    from integrations.datasets.recordings import find_recordings
    from tests.support.dashboard_messages import real_pair
    from tests.support.records import SAMPLES

    recs = {r.record_id: r for r in find_recordings(SAMPLES / "ptbxl", prefer_500hz=True)}
    return [real_pair(recs[rid], unit="CCU", bed="1")[0] for rid in ECGS]


class Template:
    """One real pair with placeholders, so that a copy is a few byte replacements (tests/support's `replicate`
    walks the JSON, which would take longer than the ingest being seeded). Checked against `replicate` once."""

    def __init__(self, pair: Any) -> None:
        self.pair = pair
        probe = replicate(pair, report_id="@@RID@@", mrn="@@MRN@@", unit="@@UNIT@@", bed="@@BED@@",
                          shift=timedelta(0), own_source=False)
        eff = json.loads(probe.analysis)["acquired_at"]
        self.report = probe.report.replace(eff.encode(), b"@@EFF@@")
        self.analysis = probe.analysis.replace(eff.encode(), b"@@EFF@@")
        self.eff = datetime.fromisoformat(eff)

    def copy(self, rid: str, mrn: str, unit: str, bed: str, shift: timedelta) -> tuple[bytes, dict, bytes, int]:
        eff = (self.eff + shift).isoformat().encode()
        subs = ((b"@@RID@@", rid.encode()), (b"@@MRN@@", mrn.encode()), (b"@@EFF@@", eff),
                (b"@@UNIT@@", unit.encode()), (b"@@BED@@", bed.encode()))
        report, analysis = self.report, self.analysis
        for old, new in subs:
            report, analysis = report.replace(old, new), analysis.replace(old, new)
        headers = {**self.pair.headers, "twiwatch.report-id": rid.encode()}
        return report, headers, analysis, self.pair.broker_ts_ms + int(shift.total_seconds() * 1000)


def _copy_args(i: int) -> tuple[str, str, str, str, timedelta]:
    return (f"bench{i:06d}", f"MRN{i % 997:04d}", ("CCU", "ED", "ICU")[i % 3], str(i % 12),
            timedelta(minutes=7 * i))


def _check_templates(templates: list[Template]) -> None:
    for i, tpl in enumerate(templates):
        rid, mrn, unit, bed, shift = _copy_args(i + 1)
        ref = replicate(tpl.pair, report_id=rid, mrn=mrn, unit=unit, bed=bed, shift=shift, own_source=False)
        report, headers, analysis, _ = tpl.copy(rid, mrn, unit, bed, shift)
        if json.loads(report) != json.loads(ref.report) or json.loads(analysis) != json.loads(ref.analysis):
            raise AssertionError(f"bench template {i} differs from tests/support replicate")


def seed(factory, sources: list[Any], n: int) -> dict[str, Any]:
    templates = [Template(p) for p in sources]
    _check_templates(templates)
    started = time.perf_counter()
    s = factory()
    for i in range(n):
        report, headers, analysis, ts = templates[i % len(templates)].copy(*_copy_args(i))
        ingest_report(s, report, headers, ts)
        ingest_analysis(s, analysis)
        if i % 500 == 499:
            s.commit()
    s.commit()
    ingest_s = time.perf_counter() - started
    user = add_user(s, "bench-reviewer", "reviewer", "bench passphrase")
    s.commit()
    rng = random.Random(14)
    ids = [f"bench{i:06d}" for i in range(n)]
    rng.shuffle(ids)
    started = time.perf_counter()
    for k, rid in enumerate(ids[: int(0.4 * n)]):
        rv = alert_detail(s, rid).row.row_version
        if k % 2:
            acknowledge(s, rid, user, rv, "127.0.0.1", identity_secret=SECRET)
        else:
            adjudicate(s, rid, user, rv, "disagree", None, "", "127.0.0.1", identity_secret=SECRET)
        if k % 200 == 199:
            s.commit()
    s.commit()
    s.close()
    return {"alerts": n, "ingest_s": round(ingest_s, 1), "messages_per_s": round(2 * n / ingest_s, 1),
            "actions": int(0.4 * n), "actions_s": round(time.perf_counter() - started, 1)}


def timed(factory, fn: Callable[[Any], Any], repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        started = time.perf_counter()
        with factory() as s:
            fn(s)
        out.append((time.perf_counter() - started) * 1000)
    return out


def summary(ms: list[float], base_p50: float) -> dict[str, float]:
    q = statistics.quantiles(ms, n=20)
    p50 = statistics.median(ms)
    return {"p50_ms": round(p50, 3), "p95_ms": round(q[18], 3), "p50_vs_baseline": round(p50 / base_p50, 1)}


def plan(engine, f: AlertFilter, cursor: str | None) -> list[str]:
    q = alert_query(f, cursor, 51)
    with engine.connect() as conn:
        sql = str(q.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
        prefix = "EXPLAIN QUERY PLAN " if conn.dialect.name == "sqlite" else "EXPLAIN "
        return [" ".join(str(c) for c in row) for row in conn.execute(text(prefix + sql))]


def run_backend(url: str, sources: list[Any], n: int, repeats: int) -> dict[str, Any]:
    migrate(url)
    engine = make_engine(url)
    factory = session_factory(engine)
    seeded = seed(factory, sources, n)
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(text("ANALYZE"))
    cursor, seen = None, 0
    with factory() as s:
        while seen < 0.9 * n:
            page, cursor = list_alerts(s, AlertFilter(), cursor, max(1, min(500, n // 20)))
            seen += len(page)
    rng = random.Random(7)
    ops: dict[str, Callable[[Any], Any]] = {
        "first_page": lambda s: list_alerts(s, AlertFilter(), None, 50),
        "deep_page": lambda s: list_alerts(s, AlertFilter(), cursor, 50),
        "filtered_unit_class": lambda s: list_alerts(s, AlertFilter(unit="ICU", cls="secondary"), None, 50),
        "filtered_class": lambda s: list_alerts(s, AlertFilter(cls="indeterminate"), None, 50),
        "filtered_state": lambda s: list_alerts(s, AlertFilter(state="adjudicated"), None, 50),
        "filtered_patient": lambda s: list_alerts(s, AlertFilter(patient="MRN0042"), None, 50),
        "alert_detail": lambda s: alert_detail(s, f"bench{rng.randrange(n):06d}"),
    }
    timed(factory, lambda s: s.execute(text("SELECT 1")), 20)  # warm the pool and caches
    base = timed(factory, lambda s: s.execute(text("SELECT 1")), repeats)
    base_p50 = statistics.median(base)
    out: dict[str, Any] = {"seed": seeded, "baseline_select_1": summary(base, base_p50)}
    for name, fn in ops.items():
        timed(factory, fn, 5)
        out[name] = summary(timed(factory, fn, repeats), base_p50)
    out["plan_first_page"] = plan(engine, AlertFilter(), None)
    out["plan_deep_page"] = plan(engine, AlertFilter(), cursor)
    out["plan_filtered_unit_class"] = plan(engine, AlertFilter(unit="ICU", cls="secondary"), None)
    out["plan_filtered_patient"] = plan(engine, AlertFilter(patient="MRN0042"), None)
    out["plan_filtered_class"] = plan(engine, AlertFilter(cls="indeterminate"), None)
    engine.dispose()
    return out


def on_backends(backends: list[str], run: Callable[[str], dict[str, Any]], name: str) -> dict[str, Any]:
    """`run` on a fresh SQLite file and on a throwaway PostgreSQL 15 database (each where asked; PostgreSQL says
    why it was skipped when its binaries are missing)."""
    out: dict[str, Any] = {}
    if "sqlite" in backends:
        with tempfile.TemporaryDirectory(prefix=f"twiwatch-{name}-") as tmp:
            out["sqlite"] = run(f"sqlite:///{tmp}/dashboard.sqlite3")
    if "postgres" in backends:
        from tests.support import postgres

        why = postgres.available()
        if why:
            out["postgres"] = {"skipped": why}
        else:
            with postgres.postgres_server() as admin:
                out["postgres"] = run(postgres.create_database(admin, name))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=200)
    ap.add_argument("--backends", default="sqlite,postgres")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    sources = real_sources()
    result: dict[str, Any] = {"research_only": True, "n": args.n, "repeats": args.repeats,
                              "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
                              "sources": [f"ptbxl:{e} {p.cls}" for e, p in zip(ECGS, sources, strict=True)]}
    result.update(on_backends(args.backends.split(","), lambda url: run_backend(url, sources, args.n, args.repeats),
                              "bench"))
    result["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    text_out = json.dumps(result, indent=2)
    print(text_out)
    if args.json:
        args.json.write_text(text_out + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
