"""Monitor streams per worker: `python -m bench.monitor --json PATH [--beds N] [--seconds S] [--quick] [--profile]`
(docs/SPEC.md §11; issue: beds per worker process and chunk-to-trend latency).

A **bed** is four ECG leads, I, II, III and one chest lead sent as `V` (a chest lead of unknown position), at 250 Hz,
in 1-s PCD-01 gateway chunks (the Mindray eGateway layout of `twiwatch replay --monitors`, with its sender rules in
TWIWATCH_SENDERS). The signals are real: the eight 12-lead 500 Hz PTB-XL records shipped in
samples/ptbxl/records500, resampled to 250 Hz (scipy `resample_poly`, 1:2, anti-aliased), leads I, II, III as
recorded and V5 sent as `V`; bed b plays record b mod 8. A record is 10 s, so each bed's record is repeated, and the
event time is aligned to the 10-s window epochs so that every analysis window holds exactly one whole recording (no
splice inside a window). Caveat: a bed's windows are therefore all the same real ECG, so its trend is flat and no
episode opens: the figures include the per-window analysis, the episode machine's step and the table write of every
window, but not the (rare) building of episode FHIR reports. The 5-minute long recordings (samples/long) are not
used: neither has a bed's four leads (MIT-BIH 100 is MLII + V5, CPSC 2021 21_8 is I + II).

Messages are encoded beforehand: one PCD-01 message per (record, second of the record) is encoded with
`encode_pcd01_chunk` with placeholder ids and times, and each bed's chunk is that template with its own control id,
patient, bed, device and times substituted; the result is checked byte for byte against the encoder for a sample of
chunks.

1. **Capacity** (`beds_per_worker`). The raw HL7 topic (isolated names: `isolated_settings`, a fresh consumer group)
   is preloaded with B beds x T s of chunks (event time in the past), while no worker runs. Then ONE worker process
   (`twiwatch worker`, default settings and monitor rules) is started and drains the backlog end to end: the decode
   agent (HL7 -> chunks topic) and the monitor agent (chunks -> windows -> trend points + the table). Its /metrics
   is polled every 0.5 s. Start: the first poll with a decoded chunk. End: the poll at which every window that a
   chunk completes (window w needs the chunk starting at w + window + lateness) has been analysed; the chunks needed
   by then are counted, and chunks/s = that count / (end - start). Each bed sends one chunk a second, so
   beds_per_worker = floor(chunks/s). Conservative: the decode agent runs ahead of the monitor agent (in a drain it
   takes most of the event loop until the raw backlog is gone), and its work on the chunks beyond those counted
   (`chunks_decoded_at_end`) is not credited. The worker's own CPU (utime + stime from /proc) over the same interval
   gives chunks per CPU-second: what one fully available core would sustain (the machine is shared; the load average
   and the machine's busy CPU fraction are recorded).
2. **Sustain** (lag bounded, `chunk_to_trend_ms`). A fresh worker on fresh topics; B beds (80 % of the capacity
   figure rounded down to 10, or --beds) replayed in real time for S s (600 s = the issue's 10 minutes; --quick 60
   s) by a separate producer process that builds every message before the start and then only sends: chunk k of each
   bed (event time t0 + k .. t0 + k + 1, t0 on a window epoch) goes out at wall time t0 + k + 1. Every 10 s the
   worker's consumer group (its app id) offsets are compared with the end offsets of the raw and the chunks topic
   (lag, in messages and in seconds of input). The chunks topic is acknowledged by hand only once no open window
   needs a chunk, so its lag has a floor of about window + lateness + 1 s of input (13 s). "Bounded", over the
   samples taken while chunks were being sent: over their last half the least-squares growth of each lag is under 5
   s of input, and the raw lag never exceeds 30 s of input. `beds_sustained` is B when bounded, else null.
   chunk_to_trend_ms: for every trend message of the run whose window a chunk completed, the trend message's broker
   time (the trends topic is LogAppendTime) minus the broker time of the raw chunk that completed it (`chunk_ts_ms`;
   the raw topic's CreateTime, stamped by the producer when sending). That chunk arrives only after the lateness
   bound (2 s) has passed over the window's end, so this latency is what comes on top of the lateness bound; the
   goal is p99 <= 2000 ms. window_end_to_trend_ms (from the window's end in event time = wall time) is given beside
   it.

`--profile` (no broker): the worker's per-chunk path in one process, on the same messages (`--beds` beds x
`--seconds` s, default 40 x 360, so baselines form): decode (HL7 -> Chunk), pack + unpack of the internal envelope,
assembly, analyse_window, the episode step, the trend JSON and the table value's JSON (faust's json codec; only
where the worker writes the entry, i.e. when the stage marks it to persist: a window, a patient change, a first
chunk), each timed (CPU time of this process) by wrapping the function the stage calls; plus a cProfile of the same
path. What the worker spends beyond that per chunk (faust, aiokafka, the changelog, the broker round trips) is the
worker's CPU per chunk minus this sum.
`--py-spy PATH-TO-PY-SPY` records the real worker's stacks (collapsed, 50 Hz) over the capacity drain and 60 s of
the sustain phase; py-spy is not a project dependency (install it in a venv of its own).

Goals (issue): >= 500 beds per worker process; chunk-to-trend p99 <= 2 s beyond the lateness bound.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RECORDS = ROOT / "samples" / "ptbxl" / "records500"
LEADS = ("I", "II", "III", "V")
CHEST = "V5"  # the PTB-XL lead sent as the bed's `V`
FS = 250.0
GOAL_BEDS = 500
GOAL_P99_MS = 2000.0
SUSTAIN_FRACTION = 0.8  # the sustain phase runs at this fraction of the drain capacity (unless --beds)
# Placeholders of the message templates (never produced by the encoder for real values: letters, no digits).
_PATIENT, _BED, _DEVICE, _CTRL = "QQPATIENTQQ", "QQBEDQQ", "QQDEVICEQQ", "QQCTRLQQ"
_SENTINEL = datetime(2001, 2, 3, 4, 5, 6, tzinfo=UTC)


# --------------------------------------------------------------------------------------------------- the beds


def bed_records() -> list[tuple[str, Any]]:
    """The eight PTB-XL 500 Hz records as 10-s, 4-lead (I, II, III, V), 250 Hz chunk records."""
    from scipy.signal import resample_poly

    from engine.record import make_record
    from integrations.datasets.wfdb_io import read_wfdb

    out = []
    for hea in sorted(RECORDS.glob("*/*.hea")):
        full = read_wfdb(hea.with_suffix(""))
        rows = [full.lead(lead) for lead in ("I", "II", "III", CHEST)]
        sig = resample_poly(np.vstack(rows).astype(np.float64), 1, int(round(full.fs / FS)), axis=1)
        out.append((f"ptbxl-{hea.stem}", make_record(sig.astype(np.float32), list(LEADS), FS, hea.stem)))
    if not out:
        raise FileNotFoundError(f"no PTB-XL 500 Hz records under {RECORDS}")
    return out


def make_beds(n: int, records: list[tuple[str, Any]]) -> list[Any]:
    from stream.devtools.monitors import Bed

    return [Bed(i, records[i % len(records)][1], "pcd01", f"bench-patient-{i + 1}", records[i % len(records)][0])
            for i in range(n)]


class Messages:
    """PCD-01 chunks of the beds, from templates encoded once per (record, second of the record)."""

    def __init__(self, beds: list[Any], s: Any, run_id: str) -> None:
        from integrations.hl7.er7 import format_dtm
        from integrations.identity import stream_key

        self.beds, self.s, self.run_id = beds, s, run_id
        self._dtm = format_dtm
        secret = s.patient_hash_secret.get_secret_value()
        self.keys = [stream_key(b.stream(), secret).encode() for b in beds]
        self._templates: dict[tuple[int, int], bytes] = {}
        self._sentinel = format_dtm(_SENTINEL).encode()

    def _piece(self, bed: Any, k: int, at: float, *, placeholders: bool) -> Any:
        from engine.record import make_record

        rec = bed.record
        n = int(round(rec.fs))
        phase = k % (rec.n_samples // n)
        return make_record(rec.signal[:, phase * n:(phase + 1) * n], list(rec.leads), rec.fs, f"{bed.label}#{k}",
                           kind="chunk", patient_id=_PATIENT if placeholders else bed.patient_id,
                           patient_system="urn:twiwatch:replay-monitors",
                           acquired_at=_SENTINEL if placeholders else datetime.fromtimestamp(at, UTC),
                           bed=bed.name, device_id=bed.device_id)

    def _template(self, bed: Any, k: int) -> bytes:
        from integrations.hl7.encode_chunks import encode_pcd01_chunk

        phase = k % (bed.record.n_samples // int(round(bed.record.fs)))
        key = (id(bed.record), phase)
        if key not in self._templates:
            app, facility = bed.sender()
            piece = self._piece(bed, k, 0.0, placeholders=True)
            self._templates[key] = encode_pcd01_chunk(
                piece, control_id=_CTRL, sending_app=app, sending_facility=facility, bed=("REPLAY", _BED),
                device_id=_DEVICE, message_time=piece.acquired_at)
        return self._templates[key]

    def message(self, i: int, k: int, t0: float) -> bytes:
        """Bed i's chunk k (event time t0 + k), as `stream.devtools.monitors` would encode it."""
        bed = self.beds[i]
        out = self._template(bed, k)
        for old, new in ((_CTRL, f"{self.run_id}-{bed.name}-{k}"), (_PATIENT, bed.patient_id), (_BED, bed.name),
                         (_DEVICE, bed.device_id)):
            out = out.replace(old.encode(), new.encode())
        return out.replace(self._sentinel, self._dtm(datetime.fromtimestamp(t0 + k, UTC)).encode())

    def check(self, t0: float, samples: int = 12) -> None:
        """Byte for byte against the replay encoder, for a spread of beds and seconds."""
        from stream.devtools.monitors import _encode

        rng = np.random.default_rng(0)
        for _ in range(samples):
            i, k = int(rng.integers(len(self.beds))), int(rng.integers(0, 700))
            bed = self.beds[i]
            want = _encode(bed, self._piece(bed, k, t0 + k, placeholders=False), f"{self.run_id}-{bed.name}-{k}",
                           (), self.s)[1]
            if self.message(i, k, t0) != want:
                raise AssertionError(f"template message differs from the encoder's (bed {i}, second {k})")

    def in_time_order(self, t0: float, seconds: int) -> Iterator[tuple[bytes, bytes]]:
        for k in range(seconds):
            for i in range(len(self.beds)):
                yield self.keys[i], self.message(i, k, t0)


# ------------------------------------------------------------------------------------------- measuring helpers


def windows_completed_by_chunks(seconds: int, window_s: float, lateness_s: float) -> tuple[int, float]:
    """Windows per bed that a chunk completes (window w needs the chunk ending at w + window + lateness), and the
    seconds of each bed's stream read by the time the last of them is out."""
    n = int(math.floor((seconds - window_s - lateness_s) / window_s)) + 1
    return max(0, n), (n - 1) * window_s + window_s + lateness_s if n > 0 else 0.0


def proc_cpu_s(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    vals = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = vals[3] + vals[4]
    return sum(vals) - idle, sum(vals)


class MachineBusy:
    def __init__(self) -> None:
        self.start = machine_cpu()

    def fraction(self) -> float:
        busy, total = machine_cpu()
        return round((busy - self.start[0]) / max(1, total - self.start[1]), 3)


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def scrape(port: int) -> dict[str, float]:
    """The worker's counters this bench needs, summed over labels."""
    want = {"twiwatch_chunks_total": "chunks", "twiwatch_monitor_windows_total": "windows",
            "twiwatch_messages_in_total": "raw_in", "twiwatch_deadletters_total": "deadletters",
            "twiwatch_monitor_streams": "streams"}
    out = dict.fromkeys(want.values(), 0.0)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
        text = resp.read().decode()
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in want:
            out[want[name]] += float(line.rsplit(" ", 1)[1])
    return out


def pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


def bench_settings(run_id: str) -> Any:
    from stream.config import ToolSettings
    from stream.devtools.e2e import isolated_settings
    from stream.devtools.monitors import rules_json

    base = ToolSettings()
    s = isolated_settings(base, run_id)
    return s.model_copy(update={"senders": rules_json(), "data_dir": base.cache_dir / "bench" / run_id})


def spy_on(py_spy: Path, pid: int, out: Path, seconds: int) -> subprocess.Popen:
    """py-spy (not a project dependency) sampling the worker's stacks at 50 Hz, collapsed stacks into `out`."""
    return subprocess.Popen([str(py_spy), "record", "-p", str(pid), "-d", str(seconds), "-r", "50", "--format",
                             "raw", "-o", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def spy_stop(spy: subprocess.Popen | None) -> None:
    if spy is not None and spy.poll() is None:
        spy.send_signal(signal.SIGINT)  # py-spy writes what it has on SIGINT
        try:
            spy.wait(60)
        except subprocess.TimeoutExpired:
            spy.kill()


def stop(proc: subprocess.Popen | None) -> None:
    from stream.devtools.e2e import stop_worker

    if proc is not None:
        stop_worker(proc)


# --------------------------------------------------------------------------------------------------- capacity


def capacity(n_beds: int, seconds: int, records: list, log: Callable[[str], None], timeout_s: float,
             py_spy: Path | None = None) -> dict:
    from stream.devtools.e2e import start_worker, wait_healthy
    from stream.producer import make_producer
    from stream.topics import ensure_topics, topic_specs

    run_id = "bench" + uuid.uuid4().hex[:8]
    s = bench_settings(run_id)
    ensure_topics(s, topic_specs(s))
    beds = make_beds(n_beds, records)
    msgs = Messages(beds, s, run_id)
    t0 = float((int(time.time()) // 10 - 100) * 10) - 10.0 * math.ceil(seconds / 10)  # in the past, on an epoch
    msgs.check(t0)
    log(f"capacity: preloading {n_beds} beds x {seconds} s = {n_beds * seconds} chunks into {s.topic_hl7_raw}")
    started = time.monotonic()
    producer = make_producer(s, client_id=f"bench-{run_id}", linger_ms=50, batch_size=1 << 20)
    try:
        nbytes = 0
        for key, value in msgs.in_time_order(t0, seconds):
            producer.send(s.topic_hl7_raw, key=key, value=value)
            nbytes += len(value)
        producer.flush()
    finally:
        producer.close()
    preload_s = time.monotonic() - started
    per_bed, bed_s_done = windows_completed_by_chunks(seconds, s.monitor_window_s, s.monitor_lateness_s)
    want_windows = per_bed * n_beds
    chunks_total = n_beds * seconds
    log(f"capacity: preloaded in {preload_s:.0f} s; starting one worker, waiting for {want_windows} windows")
    load_before = loadavg()
    worker = start_worker(s, s.cache_dir / "bench" / f"worker-{run_id}.log")
    series: list[dict] = []
    t_start = t_done = t_decoded = None
    cpu_start = cpu_done = None
    busy = load_start = spy = spy_out = None
    try:
        wait_healthy(s, worker, timeout_s=180)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if worker.poll() is not None:
                raise RuntimeError(f"worker exited with code {worker.returncode}")
            now = time.time()
            try:
                m = scrape(s.worker_web_port)
            except OSError:
                time.sleep(0.5)
                continue
            cpu = proc_cpu_s(worker.pid)
            series.append({"t": now, **m, "cpu_s": cpu})
            if t_start is None and m["chunks"] > 0:
                t_start, cpu_start, busy = now, cpu, MachineBusy()
                load_start = loadavg()
                if py_spy:  # sample the worker's stacks for part of the drain (py-spy is not a project dependency)
                    spy_out = s.cache_dir / "bench" / f"pyspy-{run_id}.txt"
                    spy = spy_on(py_spy, worker.pid, spy_out, 3600)
            if t_decoded is None and m["chunks"] >= chunks_total:
                t_decoded = now
            if m["windows"] >= want_windows:
                t_done, cpu_done = now, cpu
                break
            time.sleep(0.5)
        if t_done is None:
            log("capacity: timed out before the backlog was drained; the rate is over what was done")
            last = series[-1]
            t_done, cpu_done = last["t"], last["cpu_s"]
            bed_s_done = last["windows"] / max(1, want_windows) * bed_s_done
        busy_frac = busy.fraction() if busy else None
        load_end = loadavg()
        final = series[-1]
    finally:
        spy_stop(spy)
        stop(worker)
    wall = t_done - t_start
    chunks_done = n_beds * bed_s_done
    rate = chunks_done / wall
    cpu = (cpu_done - cpu_start) if cpu_done is not None and cpu_start is not None else None
    # steady state: windows between 10 % and 90 % of the total, least squares
    ts = np.array([p["t"] for p in series if 0.1 * want_windows <= p["windows"] <= 0.9 * want_windows])
    ws = np.array([p["windows"] for p in series if 0.1 * want_windows <= p["windows"] <= 0.9 * want_windows])
    steady = float(np.polyfit(ts - ts[0], ws, 1)[0]) * s.monitor_window_s if len(ts) >= 3 else None
    result = {
        "run_id": run_id, "beds": n_beds, "seconds_per_bed": seconds, "chunks_preloaded": chunks_total,
        "message_bytes_mean": round(nbytes / chunks_total), "preload_s": round(preload_s, 1),
        "windows_expected": want_windows, "windows_done": int(final["windows"]),
        "deadletters": int(final["deadletters"]),
        "bed_seconds_needed_per_bed": bed_s_done, "chunks_through": round(chunks_done),
        # the decode agent may run ahead of the monitor agent: work done beyond `chunks_through` is not counted
        "chunks_decoded_at_end": int(final["chunks"]),
        "drain_wall_s": round(wall, 1), "decode_done_after_s": round(t_decoded - t_start, 1) if t_decoded else None,
        "chunks_per_s": round(rate, 1),
        "chunks_per_s_steady_10_90pct": round(steady, 1) if steady else None,
        "worker_cpu_s": round(cpu, 1) if cpu is not None else None,
        "worker_cpu_utilisation": round(cpu / wall, 3) if cpu is not None else None,
        "worker_cpu_ms_per_chunk": round(cpu / chunks_done * 1000, 3) if cpu else None,
        "chunks_per_worker_cpu_s": round(chunks_done / cpu, 1) if cpu else None,
        "machine_busy_fraction": busy_frac, "py_spy_stacks": str(spy_out) if spy_out else None,
        "series_every_5s": [{"t_s": round(p["t"] - t_start, 1), "chunks_decoded": int(p["chunks"]),
                             "windows": int(p["windows"]), "worker_cpu_s": p["cpu_s"]}
                            for p in series[::10] if t_start is not None and p["t"] >= t_start],
        "loadavg": {"before_worker": load_before, "at_start": load_start, "at_end": load_end},
    }
    log(f"capacity: {result['chunks_per_s']} chunks/s end to end over {wall:.0f} s "
        f"(worker CPU {result['worker_cpu_utilisation']}, {result['worker_cpu_ms_per_chunk']} ms CPU per chunk, "
        f"load {load_end})")
    return result


# ---------------------------------------------------------------------------------------------------- sustain


def produce(spec_path: Path) -> None:
    """The producer process of the sustain phase: build everything, print READY, send on the wall clock."""
    from stream.producer import make_producer

    spec = json.loads(spec_path.read_text())
    s = bench_settings(spec["run_id"])
    s = s.model_copy(update={k: v for k, v in spec["settings"].items()})
    beds = make_beds(spec["beds"], bed_records())
    msgs = Messages(beds, s, spec["run_id"])
    t_build = time.monotonic()
    t0 = float(math.ceil((time.time() + 30 + spec["beds"] * spec["seconds"] * 1.5e-5) / 10) * 10)
    per_second = [[(msgs.keys[i], msgs.message(i, k, t0)) for i in range(len(beds))] for k in range(spec["seconds"])]
    msgs.check(t0)
    build_s = time.monotonic() - t_build
    producer = make_producer(s, client_id=f"bench-{spec['run_id']}-paced")
    print(json.dumps({"ready": True, "t0": t0, "build_s": round(build_s, 1)}), flush=True)
    cpu0 = time.process_time()
    late = []
    for k, batch in enumerate(per_second):
        delay = t0 + k + 1 - time.time()  # chunk k holds [t0 + k, t0 + k + 1): sent once its second is over
        if delay > 0:
            time.sleep(delay)
        late.append(time.time() - (t0 + k + 1))
        for key, value in batch:
            producer.send(s.topic_hl7_raw, key=key, value=value)
        per_second[k] = []
    producer.flush()
    producer.close()
    print(json.dumps({"done": True, "sent": spec["beds"] * spec["seconds"], "producer_cpu_s": round(
        time.process_time() - cpu0, 1), "send_late_ms_p50": pct([x * 1000 for x in late], 50),
        "send_late_ms_max": round(max(late) * 1000, 1)}), flush=True)


def group_lag(admin: Any, consumer: Any, group: str, topics: list[str]) -> dict[str, int]:
    from kafka import TopicPartition

    if hasattr(admin, "list_group_offsets"):  # kafka-python >= 3
        committed = admin.list_group_offsets(group).get(group, {})
    else:
        committed = admin.list_consumer_group_offsets(group)
    out = {}
    for topic in topics:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        ends = consumer.end_offsets(tps)
        out[topic] = int(sum(ends[tp] - (committed[tp].offset if tp in committed and committed[tp].offset >= 0
                                         else 0) for tp in tps))
    return out


def lag_summary(series: list[dict], key: str, beds: int, floor_s: float) -> dict:
    t = np.array([p["t_s"] for p in series], dtype=float)
    lag = np.array([p[key] for p in series], dtype=float)
    half = t >= t[-1] / 2
    slope = float(np.polyfit(t[half], lag[half], 1)[0]) if half.sum() >= 3 else 0.0
    growth_s = slope * (t[half][-1] - t[half][0]) / beds if half.sum() >= 3 else 0.0
    return {"max": int(lag.max()), "max_s_of_input": round(lag.max() / beds, 1),
            "mean_first_half": round(float(lag[~half].mean()), 1) if (~half).any() else None,
            "mean_last_half": round(float(lag[half].mean()), 1),
            "last_half_slope_msgs_per_s": round(slope, 2), "last_half_growth_s_of_input": round(growth_s, 2),
            "structural_floor_s_of_input": floor_s}


def sustain(n_beds: int, seconds: int, log: Callable[[str], None], py_spy: Path | None = None) -> dict:
    from kafka import KafkaAdminClient, KafkaConsumer

    from stream.devtools.e2e import start_worker, wait_healthy
    from stream.devtools.outputs import _consumer, _read_all
    from stream.topics import ensure_topics, topic_specs

    run_id = "bench" + uuid.uuid4().hex[:8]
    s = bench_settings(run_id)
    ensure_topics(s, topic_specs(s))
    spec_path = s.cache_dir / "bench" / f"producer-{run_id}.json"
    spec_path.parent.mkdir(parents=True, exist_ok=True)
    spec_path.write_text(json.dumps({"run_id": run_id, "beds": n_beds, "seconds": seconds,
                                     "settings": {"worker_web_port": s.worker_web_port}}))
    worker = start_worker(s, s.cache_dir / "bench" / f"worker-{run_id}.log")
    producer: subprocess.Popen | None = None
    admin = KafkaAdminClient(bootstrap_servers=s.bootstrap, client_id=f"bench-{run_id}-lag")
    consumer = KafkaConsumer(bootstrap_servers=s.bootstrap, group_id=None)
    series: list[dict] = []
    spy = spy_at = spy_out = None
    try:
        wait_healthy(s, worker, timeout_s=180)
        producer = subprocess.Popen([sys.executable, "-m", "bench.monitor", "--produce", str(spec_path)],
                                    cwd=ROOT, stdout=subprocess.PIPE, text=True, start_new_session=True)
        ready = json.loads(producer.stdout.readline() or "{}")
        if not ready.get("ready"):
            raise RuntimeError("the producer did not start")
        t0 = ready["t0"]
        log(f"sustain: {n_beds} beds x {seconds} s in real time from t0 = {t0:.0f} "
            f"(built in {ready['build_s']} s; starts in {t0 - time.time():.0f} s)")
        while time.time() < t0:
            time.sleep(0.2)
        busy, cpu_w0 = MachineBusy(), proc_cpu_s(worker.pid)
        if py_spy:  # the worker's stacks over 60 s of the real-time run, from 20 s in
            spy_out = s.cache_dir / "bench" / f"pyspy-{run_id}.txt"
            spy_at = t0 + min(20, seconds / 3)
        end = t0 + seconds + 1 + 20  # the last chunk goes out at t0 + seconds; 20 s for the tail
        next_sample = t0 + 10
        while time.time() < end:
            time.sleep(max(0.0, next_sample - time.time()))
            next_sample += 10
            if spy_at is not None and spy is None and time.time() >= spy_at:
                spy = spy_on(py_spy, worker.pid, spy_out, int(min(60, seconds / 2)))
            if worker.poll() is not None:
                raise RuntimeError(f"worker exited with code {worker.returncode}")
            lag = group_lag(admin, consumer, s.app_id, [s.topic_hl7_raw, s.topic_chunks])
            m = scrape(s.worker_web_port)
            point = {"t_s": round(time.time() - t0, 1), "raw_lag": lag[s.topic_hl7_raw],
                     "chunks_lag": lag[s.topic_chunks], "windows": int(m["windows"]), "chunks": int(m["chunks"]),
                     "worker_cpu_s": proc_cpu_s(worker.pid), "load1": loadavg()[0]}
            series.append(point)
            if len(series) % 6 == 0 or time.time() >= end:
                log(f"sustain: t={point['t_s']:.0f} s raw lag {point['raw_lag']} chunks lag {point['chunks_lag']} "
                    f"windows {point['windows']} load {point['load1']}")
        done = json.loads(producer.stdout.readline() or "{}")
        producer.wait(60)
        cpu_w1 = proc_cpu_s(worker.pid)
        busy_frac = busy.fraction()
        reader = _consumer(s)
        try:
            trends = [(json.loads(r.value), r.timestamp) for r in _read_all(reader, s.topic_trends)]
        finally:
            reader.close()
    finally:
        if producer is not None and producer.poll() is None:
            producer.kill()
        if spy is not None:
            spy.wait(120)
        stop(worker)
        admin.close()
        consumer.close()
    sent_window_limit = t0 + seconds - s.monitor_window_s - s.monitor_lateness_s  # windows completed by a chunk
    lat, end_lat = [], []
    for t, ts in trends:
        if t["window_start_s"] <= sent_window_limit and t.get("chunk_ts_ms"):
            lat.append(ts - t["chunk_ts_ms"])
            end_lat.append(ts - (t["window_start_s"] + t["window_s"]) * 1000)
    per_bed, _ = windows_completed_by_chunks(seconds, s.monitor_window_s, s.monitor_lateness_s)
    floor_s = s.monitor_window_s + s.monitor_lateness_s + 1
    in_run = [p for p in series if p["t_s"] <= seconds + 1]  # while chunks were being sent (the tail drains)
    raw = lag_summary(in_run, "raw_lag", n_beds, 0.0)
    chunks = lag_summary(in_run, "chunks_lag", n_beds, floor_s)
    bounded = bool(raw["last_half_growth_s_of_input"] < 5 and chunks["last_half_growth_s_of_input"] < 5
                   and raw["max_s_of_input"] <= 30)
    cpu = (cpu_w1 - cpu_w0) if cpu_w1 is not None and cpu_w0 is not None else None
    result = {
        "run_id": run_id, "beds": n_beds, "seconds": seconds, "t0": t0, "producer": {**ready, **done},
        "windows_expected": per_bed * n_beds, "trend_messages": len(trends), "windows_completed_by_chunks": len(lat),
        "lag_bounded": bounded,
        "lag": {"raw_topic": raw, "chunks_topic": chunks, "criterion": (
            "over the samples taken while chunks were sent: last-half least-squares growth < 5 s of input on both "
            "topics, and raw lag never over 30 s of input")},
        "lag_series": series,
        "chunk_to_trend_ms": {"p50": pct(lat, 50), "p90": pct(lat, 90), "p99": pct(lat, 99),
                              "max": round(max(lat), 1) if lat else None, "n": len(lat)},
        "window_end_to_trend_ms": {"p50": pct(end_lat, 50), "p99": pct(end_lat, 99),
                                   "includes": "lateness bound (2 s) + the completing chunk's own second + latency"},
        "worker_cpu_s": round(cpu, 1) if cpu is not None else None,
        "worker_cpu_utilisation": round(cpu / (seconds + 21), 3) if cpu is not None else None,
        "machine_busy_fraction": busy_frac, "py_spy_stacks": str(spy_out) if spy_out else None,
        "loadavg_1min": {"min": min((p["load1"] for p in in_run), default=None),
                         "max": max((p["load1"] for p in in_run), default=None),
                         "mean": round(float(np.mean([p["load1"] for p in in_run])), 2) if in_run else None},
    }
    log(f"sustain: lag bounded {bounded}; chunk-to-trend p50 {result['chunk_to_trend_ms']['p50']} ms, "
        f"p99 {result['chunk_to_trend_ms']['p99']} ms over {len(lat)} windows")
    return result


# ---------------------------------------------------------------------------------------------------- profile


@dataclass
class _Timer:
    seconds: float = 0.0
    calls: int = 0


def profile(n_beds: int, seconds: int, log: Callable[[str], None]) -> dict:
    """The worker's per-chunk path in one process (no Kafka, no faust), each stage timed."""
    import cProfile
    import io
    import pstats

    from faust.serializers import codecs

    from stream import envelope
    from stream.monitor import assembly
    from stream.monitor import stage as monitor
    from stream.stages import chunk_parts, decode_message

    run_id = "profile"
    s = bench_settings(run_id)
    records = bed_records()
    beds = make_beds(n_beds, records)
    msgs = Messages(beds, s, run_id)
    t0 = float((int(time.time()) // 10 - 1000) * 10)
    raw = list(msgs.in_time_order(t0, seconds))
    secret = s.patient_hash_secret.get_secret_value()
    timers: dict[str, _Timer] = {}

    def timed(name: str, fn: Callable) -> Callable:
        t = timers.setdefault(name, _Timer())

        def wrapper(*a, **kw):
            started = time.process_time()  # CPU time: on a shared machine wall time counts the others' work
            try:
                return fn(*a, **kw)
            finally:
                t.seconds += time.process_time() - started
                t.calls += 1
        return wrapper

    class _Json:  # the stage's `json` module, with dumps timed (the trend message)
        dumps = staticmethod(timed("trend JSON", json.dumps))
        loads = staticmethod(json.loads)

    saved = (monitor.analyse_window, monitor.step, monitor.json, assembly.StreamAssembler.add)
    monitor.analyse_window = timed("analyse_window", monitor.analyse_window)
    monitor.step = timed("episode step", monitor.step)
    monitor.json = _Json
    assembly.StreamAssembler.add = timed("assembly", assembly.StreamAssembler.add)
    t_decode = timed("decode (HL7 -> Chunk)", decode_message)
    t_pack = timed("chunk_parts + envelope.pack", lambda c, src: [envelope.pack(seg, meta) for _, seg, meta in
                                                                  chunk_parts(c, src, secret)])
    t_unpack = timed("envelope.unpack", envelope.unpack)
    t_table = timed("table value JSON (faust codec)", lambda v: codecs.dumps("json", v))
    t_chunk = timed("on_chunk (total, incl. the above stages)", monitor.on_chunk)

    def run(items: list[tuple[bytes, bytes]]) -> None:
        table: dict[str, Any] = {}
        assemblers: dict[str, Any] = {}
        for offset, (_, value) in enumerate(items):
            chunk = t_decode(value, "hl7", s)
            src = {"topic": s.topic_hl7_raw, "partition": 0, "offset": offset,
                   "timestamp_ms": int(time.time() * 1000), "format": "hl7"}
            for packed in t_pack(chunk, src):
                record, meta = t_unpack(packed)
                key = meta["stream"]
                asm = assemblers.get(key) or assemblers.setdefault(key, monitor.assembler_for(s))
                out = t_chunk(s, table.get(key), asm, record, meta, None, now=time.time())
                table[key] = out.state
                if out.persist:  # as the worker: the table entry is written when the episode state changed
                    t_table(out.state)

    try:
        log(f"profile: {n_beds} beds x {seconds} s = {len(raw)} chunks through decode + on_chunk")
        started, cpu0 = time.perf_counter(), time.process_time()
        run(raw)
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu0
        stages = {name: {"ms_per_chunk": round(t.seconds / len(raw) * 1000, 4), "calls": t.calls,
                         "ms_per_call": round(t.seconds / max(1, t.calls) * 1000, 4)} for name, t in timers.items()}
        # cProfile of the same path on a shorter run (its overhead inflates small Python functions)
        for name in timers:
            timers[name] = _Timer()
        prof = cProfile.Profile()
        prof.enable()
        run(raw[: max(1, len(raw) // 3)])
        prof.disable()
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(25)
        top_tottime = buf.getvalue()
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(40)
        top_cumulative = buf.getvalue()
    finally:
        monitor.analyse_window, monitor.step, monitor.json, assembly.StreamAssembler.add = saved
    table_bytes = len(codecs.dumps("json", monitor.fresh_entry(s, None)))
    result = {"beds": n_beds, "seconds": seconds, "chunks": len(raw), "wall_s": round(wall, 2),
              "cpu_ms_per_chunk": round(cpu / len(raw) * 1000, 4), "stages": stages,
              "table_value_bytes_fresh": table_bytes,
              "cprofile_tottime": top_tottime, "cprofile_cumulative": top_cumulative}
    log(f"profile: {result['cpu_ms_per_chunk']} ms CPU per chunk in-process "
        f"(= {1000 / max(1e-9, result['cpu_ms_per_chunk']):.0f} chunks per CPU-second)")
    for name, st in stages.items():
        log(f"  {name:45s} {st['ms_per_chunk']:8.4f} ms/chunk  ({st['calls']} calls, {st['ms_per_call']} ms each)")
    return result


# ------------------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, help="write the figures here")
    ap.add_argument("--beds", type=int, help="beds of the sustain phase (default: the capacity figure, rounded "
                    "down to 10); with --profile, the beds profiled")
    ap.add_argument("--seconds", type=int, help="sustain duration (default 600; --quick 60); with --profile, "
                    "seconds per bed")
    ap.add_argument("--quick", action="store_true", help="a smoke run: smaller backlog, 60-s sustain")
    ap.add_argument("--capacity-beds", type=int, help="beds preloaded for the capacity phase (default 500; quick 200)")
    ap.add_argument("--capacity-seconds", type=int, help="seconds per bed preloaded (default 60; quick 30)")
    ap.add_argument("--skip-sustain", action="store_true", help="capacity only")
    ap.add_argument("--profile", action="store_true", help="in-process per-stage profile of the chunk path only")
    ap.add_argument("--py-spy", type=Path, help="a py-spy executable: record the worker's stacks during the "
                    "capacity drain and 60 s of the sustain phase (collapsed stacks under the cache dir)")
    ap.add_argument("--produce", type=Path, help=argparse.SUPPRESS)  # the sustain phase's producer process
    args = ap.parse_args(argv)
    if args.produce:
        produce(args.produce)
        return 0
    os.chdir(ROOT)

    def log(line: str) -> None:
        print(line, flush=True)

    machine = {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
               "loadavg_at_start": loadavg()}
    command = "python -m bench.monitor " + " ".join(sys.argv[1:] if argv is None else argv)
    if args.profile:
        result = {"profile": profile(args.beds or 40, args.seconds or 360, log), "machine": machine,
                  "command": command, "method": __doc__}
    else:
        records = bed_records()
        cap = capacity(args.capacity_beds or (200 if args.quick else 500),
                       args.capacity_seconds or (30 if args.quick else 60), records, log, timeout_s=900,
                       py_spy=args.py_spy)
        beds_per_worker = int(cap["chunks_per_s"])
        result: dict[str, Any] = {
            "beds_per_worker": beds_per_worker,
            "chunk_to_trend_ms": None,
            "goals": {"beds_per_worker_min": GOAL_BEDS, "chunk_to_trend_p99_ms_max": GOAL_P99_MS,
                      "beds_met": bool(beds_per_worker >= GOAL_BEDS)},
            "capacity": cap, "machine": machine, "command": command, "quick": args.quick,
        }
        if not args.skip_sustain:
            n = args.beds or max(10, int(beds_per_worker * SUSTAIN_FRACTION) // 10 * 10)
            sus = sustain(n, args.seconds or (60 if args.quick else 600), log, py_spy=args.py_spy)
            result["chunk_to_trend_ms"] = {k: sus["chunk_to_trend_ms"][k] for k in ("p50", "p99")}
            result["goals"]["latency_met"] = bool((sus["chunk_to_trend_ms"]["p99"] or math.inf) <= GOAL_P99_MS)
            result["goals"]["sustained_at_beds"] = n
            result["goals"]["lag_bounded"] = sus["lag_bounded"]
            result["beds_sustained"] = n if sus["lag_bounded"] else None
            result["sustain"] = sus
        machine["loadavg_at_end"] = loadavg()
        result["method"] = __doc__
        log(f"beds_per_worker {beds_per_worker} (goal >= {GOAL_BEDS}); chunk_to_trend_ms "
            f"{result['chunk_to_trend_ms']} (goal p99 <= {GOAL_P99_MS:.0f}); load {machine['loadavg_at_end']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
