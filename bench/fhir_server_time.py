"""Where a report version's delivery time goes: our client's time per request beside the server's own time for it
(Tomcat's access log), and how many versions/s the server takes with 1..N writers at once.

    .venv/bin/python bench/fhir_server_time.py [--json PATH] [--reports 60] [--writers 1,2,4,8] [--warmup 100]
                                               [--per-transaction 1,4] [--server-arg=--PROPERTY=VALUE ...]
                                               [--jvm-arg=OPTION ...]

Starts a fresh in-memory HAPI FHIR 8.8 (R4B, full JIT, as bench/fhir_delivery.py does) with Tomcat's access log on
(`%D`: the server's time from reading the request to writing the response), then writes report versions with the
sink's own writer (integrations/fhir/delivery.py; every third report also gets a version 2, which is read before it is
written):
1. Warm-up (--warmup reports, not measured).
2. One writer, --reports reports: per request kind (the read before a later version, the transaction of a first
   version, the transaction of a later version, Patient/Device look-ups), our time (request sent → response headers)
   and the server's time from its log, median and p90.
3. Throughput: --reports reports with each number of --writers at once (different reports, as the sink's lanes)
   and each number of reports per transaction (--per-transaction; ReportWriter.deliver_many, as the sink groups
   them): versions/s and the server's median time per transaction. The combinations run back to back on the same
   server, so they compare under the same load of the moment.
Each phase also reports the server's CPU time per version (the JVM's user + system time over the phase, in all
threads but the JIT compilers', from /proc): its own work, which moves far less with the shared machine's load than
wall-clock times do, so settings are compared by it. --server-arg passes a server property
(stream/devtools/FhirDevServer.java's twiwatch.* settings, e.g. --server-arg=--twiwatch.jpa.tag-storage=VERSIONED
to measure the old tag storage); --jvm-arg a JVM option (e.g. a JFR recording:
--jvm-arg=-XX:StartFlightRecording=filename=/tmp/hapi.jfr,settings=profile).
No Kafka here: this measures the server and the write path only. The machine is shared; results move with its load.
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402

from integrations.fhir.client import FhirClient  # noqa: E402
from integrations.fhir.delivery import ReportWriter  # noqa: E402
from stream.config import ToolSettings  # noqa: E402
from stream.devtools import fhir_local  # noqa: E402
from stream.devtools.e2e import free_port  # noqa: E402
from tests.support.reports import report_bundle  # noqa: E402

ACCESS_PATTERN = "%m %U %s %D"  # method, path, status, time taken (Tomcat 10.1: microseconds)


def kind(method: str, path: str) -> str:
    path = path.split("?")[0].rstrip("/")
    if method == "POST" and path.endswith("/fhir"):
        return "transaction"
    return f"{method} {path.rsplit('/', 1)[-1]}"


class Timed:
    """Our side: each request's time from sending to the response's headers, by kind, in the order sent."""

    def __init__(self, client: FhirClient):
        self.lock = threading.Lock()
        self.seen: list[tuple[str, float]] = []
        client._http.event_hooks = {"request": [self._sent], "response": [self._answered]}

    @staticmethod
    def _sent(request) -> None:
        request.extensions["twiwatch.t0"] = time.perf_counter()

    def _answered(self, response) -> None:
        req = response.request
        took = time.perf_counter() - req.extensions["twiwatch.t0"]
        with self.lock:
            self.seen.append((kind(req.method, req.url.path), took * 1000))


def server_times(log: Path, skip: int) -> list[tuple[str, float]]:
    out = []
    for line in log.read_text().splitlines()[skip:]:
        parts = line.split()
        if len(parts) == 4:
            out.append((kind(parts[0], parts[1]), int(parts[3]) / 1000))
    return out


def cpu_s(pid: int) -> float:
    """The server's CPU time so far (user + system) in all its threads but the JIT compilers': its own work, whatever
    else the shared machine runs, so settings compare by it when wall-clock times move with other load. (The JIT is
    left out because under load it is still compiling after the warm-up, which is not the cost of a request.)"""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            comm, fields = task.joinpath("stat").read_text().rsplit(")", 1)
        except OSError:  # the thread ended meanwhile
            continue
        if "Compiler" in comm.split("(", 1)[1]:
            continue
        parts = fields.split()
        total += int(parts[11]) + int(parts[12])
    return total / os.sysconf("SC_CLK_TCK")


def stats(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    values = sorted(values)
    return {"n": len(values), "median_ms": round(statistics.median(values), 1),
            "p90_ms": round(values[min(len(values) - 1, int(0.9 * len(values)))], 1)}


def by_kind(rows: list[tuple[str, float]]) -> dict[str, dict]:
    kinds: dict[str, list[float]] = {}
    for k, ms in rows:
        kinds.setdefault(k, []).append(ms)
    return {k: stats(v) for k, v in sorted(kinds.items())}


def versions(tag: str, n: int) -> list[list[dict]]:
    """Per report, its versions in order (v2 for every third report), each a report bundle."""
    return [[report_bundle(f"{tag}r{i:04d}", v, mrn=f"PROF-{tag}-{i}") for v in ((1, 2) if i % 3 == 0 else (1,))]
            for i in range(n)]


def write_all(writer: ReportWriter, reports: list[list[dict]], writers: int, per_tx: int = 1) -> tuple[int, float]:
    """Each writer takes `per_tx` reports at a time and writes their versions in turn (v1s together, then v2s)."""
    groups = [reports[i:i + per_tx] for i in range(0, len(reports), per_tx)]

    def one(group: list[list[dict]]) -> int:
        written = 0
        for turn in range(max(len(r) for r in group)):
            bundles = [r[turn] for r in group if len(r) > turn]
            for outcome in writer.deliver_many(bundles):
                if isinstance(outcome, Exception):
                    raise outcome
                written += 1
        return written

    started = time.perf_counter()
    with ThreadPoolExecutor(writers) as pool:
        written = sum(pool.map(one, groups))
    return written, time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", type=Path)
    ap.add_argument("--reports", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--writers", default="1,2,4,8")
    ap.add_argument("--per-transaction", default="1,4")
    ap.add_argument("--jvm-arg", action="append", default=[],
                    help="an extra JVM option for the server (e.g. a JFR recording, a JIT flag); repeatable")
    ap.add_argument("--server-arg", action="append", default=[],
                    help="an extra server property (e.g. --twiwatch.jpa.inline-text-below=0), to measure one setting")
    args = ap.parse_args()

    run = uuid.uuid4().hex[:8]
    base = ToolSettings()
    local = fhir_local.from_settings(base, port=free_port(), database="memory", name=f"prof-{run}", fast_start=False)
    fhir_local.resolve(local)
    local.home.mkdir(parents=True, exist_ok=True)
    cmd = fhir_local.java_cmd(local)
    cmd = cmd[:1] + args.jvm_arg + cmd[1:] + args.server_arg + [
        "--server.tomcat.accesslog.enabled=true", f"--server.tomcat.accesslog.directory={local.home}",
        "--server.tomcat.accesslog.prefix=access", "--server.tomcat.accesslog.suffix=.log",
        "--server.tomcat.accesslog.rotate=false", "--server.tomcat.accesslog.buffered=false",
        f"--server.tomcat.accesslog.pattern={ACCESS_PATTERN}"]
    proc = subprocess.Popen(cmd, stdout=open(local.log_file, "ab"), stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    access = local.home / "access.log"
    result: dict = {"machine": platform.node(), "cpus": os.cpu_count(),
                    "server": f"local HAPI {base.fhir_server_hapi_version} (R4B, memory, full JIT)",
                    "jvm_args": args.jvm_arg, "server_args": args.server_arg}
    try:
        deadline = time.monotonic() + 300
        while not fhir_local.answers(local):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"HAPI did not start; see {local.log_file}")
            time.sleep(1)
        client = FhirClient(local.base_url, timeout_s=60, max_connections=32)
        writer = ReportWriter(client)
        print(f"warm-up: {args.warmup} reports", flush=True)
        write_all(writer, versions("w" + run, args.warmup), 2)
        load_before = os.getloadavg()[0]

        timed = Timed(client)
        skip = len(access.read_text().splitlines())
        reports = versions("s" + run, args.reports)
        cpu0 = cpu_s(proc.pid)
        written, took = write_all(writer, reports, 1)
        cpu = cpu_s(proc.pid) - cpu0
        time.sleep(1)
        ours, theirs = by_kind(timed.seen), by_kind(server_times(access, skip))
        result["one_writer"] = {"versions": written, "seconds": round(took, 1),
                                "versions_per_s": round(written / took, 2),
                                "server_cpu_ms_per_version": round(1000 * cpu / written, 1),
                                "client": ours, "server": theirs, "load_1min": round(load_before, 2)}
        print(json.dumps(result["one_writer"]), flush=True)

        result["writers"] = []
        for n in (int(x) for x in args.writers.split(",")):
            for per_tx in (int(x) for x in args.per_transaction.split(",")):
                skip = len(access.read_text().splitlines())
                load = os.getloadavg()[0]
                cpu0 = cpu_s(proc.pid)
                written, took = write_all(writer, versions(f"c{n}x{per_tx}" + run, args.reports), n, per_tx)
                cpu = cpu_s(proc.pid) - cpu0
                time.sleep(1)
                tx = [ms for k, ms in server_times(access, skip) if k == "transaction"]
                row = {"writers": n, "reports_per_transaction": per_tx, "versions": written,
                       "seconds": round(took, 1), "versions_per_s": round(written / took, 2),
                       "server_cpu_ms_per_version": round(1000 * cpu / written, 1), "server_transaction": stats(tx),
                       "load_1min": round(load, 2)}
                result["writers"].append(row)
                print(json.dumps(row), flush=True)
        client.close()
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(local.home, ignore_errors=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
