"""CPU cost of one analysis: our full engine vs NeuroKit2 (clean + peaks + delineate, 12 leads) on the same records.

    .venv/bin/python bench/engine.py [--json PATH] [--records DIR ...] [--repeat N] [--nk-method dwt]

Records: every 10-s, 12-lead, 500 Hz WFDB record under samples/ (LUDB and the PTB-XL 500 Hz files shipped with the
project), so anyone can rerun it. One core: the process is pinned to one CPU and BLAS/OpenMP to one thread.
Per record, the CPU time (time.process_time) of the best of --repeat runs (ours) / --nk-repeat runs (NeuroKit2) after a
warm-up run; reported as median / mean / p90 over records, and the ratio NeuroKit2 / ours of the medians.
Memory: peak Python allocation during one analysis (tracemalloc, a separate pass since tracing slows the code) and
the process's peak resident set (resource.getrusage) at the end.
Goal (issue 3): <= 20 ms per record for ours on one core.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"
ROOT = Path(__file__).resolve().parents[1]
# this file is bench/engine.py: keep `import engine` pointing at the project's engine package, not at this script
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402

GOAL_MS = 20.0


def find_records(dirs: list[Path]) -> list[Path]:
    """WFDB records (path without extension) that are 12-lead, 500 Hz and 10 s long."""
    from integrations.datasets.wfdb_io import read_header

    out = []
    for d in dirs:
        for hea in sorted(Path(d).rglob("*.hea")):
            h = read_header(hea.with_suffix(""))
            if h.n_sig == 12 and h.fs == 500 and h.sig_len == 5000:
                out.append(hea.with_suffix(""))
    return out


def load(path: Path):
    from engine.record import ordered_standard
    from integrations.datasets.wfdb_io import read_wfdb

    rec = read_wfdb(path, source_id=f"bench:{path.name}")
    sig, _ = ordered_standard(rec)
    return rec, np.asarray(sig, dtype=float)


def nk_analysis(sig: np.ndarray, fs: int, method: str) -> None:
    """What a NeuroKit2 user runs for a 12-lead delineation: per lead clean -> peaks -> delineate."""
    import neurokit2 as nk

    for x in sig:
        c = nk.ecg_clean(x, sampling_rate=fs)
        _, info = nk.ecg_peaks(c, sampling_rate=fs)
        try:
            nk.ecg_delineate(c, info["ECG_R_Peaks"], sampling_rate=fs, method=method)
        except Exception:  # noqa: BLE001 - a failing lead still cost its time; NeuroKit2 raises many types
            pass


def cpu_best(fn, repeat: int) -> float:
    fn()  # warm-up: imports, caches
    best = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best


def traced_peak(fn) -> int:
    tracemalloc.start()
    tracemalloc.reset_peak()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def stats(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {"median": float(np.median(a)), "mean": float(a.mean()), "p90": float(np.percentile(a, 90)),
            "max": float(a.max())}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    ap.add_argument("--records", type=Path, nargs="*", default=[ROOT / "samples"], help="folders searched for records")
    ap.add_argument("--repeat", type=int, default=7, help="timed runs per record for ours (best counts)")
    ap.add_argument("--nk-repeat", type=int, default=2, help="timed runs per record for NeuroKit2")
    ap.add_argument("--nk-method", default="dwt", help="NeuroKit2 ecg_delineate method")
    ap.add_argument("--limit", type=int, default=None, help="only the first N records")
    ap.add_argument("--no-pin", action="store_true", help="do not pin this process to one CPU (tests)")
    a = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    pinned = hasattr(os, "sched_setaffinity") and not a.no_pin
    if pinned:
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})

    import neurokit2

    from engine import __version__
    from engine.analyze import analyze

    paths = find_records(a.records)[:a.limit]
    if not paths:
        raise SystemExit(f"no 12-lead 500 Hz 10-s records under {a.records}")
    ours_ms, nk_ms, ours_mem, nk_mem = [], [], [], []
    for p in paths:
        rec, sig = load(p)
        ours_ms.append(1000 * cpu_best(lambda rec=rec: analyze(rec), a.repeat))
        nk_ms.append(1000 * cpu_best(lambda sig=sig: nk_analysis(sig, 500, a.nk_method), a.nk_repeat))
        ours_mem.append(traced_peak(lambda rec=rec: analyze(rec)))
        nk_mem.append(traced_peak(lambda sig=sig: nk_analysis(sig, 500, a.nk_method)))
        print(f"{p.relative_to(ROOT) if p.is_relative_to(ROOT) else p}: ours {ours_ms[-1]:.1f} ms, "
              f"NeuroKit2 {nk_ms[-1]:.1f} ms", file=sys.stderr)
    o, n = stats(ours_ms), stats(nk_ms)
    result = {
        "records": len(paths), "record_kind": "12 leads, 500 Hz, 10 s",
        "cpu": _cpu_name(), "cpus": os.cpu_count(), "python": sys.version.split()[0],
        "engine": __version__, "neurokit2": neurokit2.__version__, "nk_method": a.nk_method,
        "one_core": pinned,
        "ours_cpu_ms": o, "neurokit2_cpu_ms": n, "ratio_nk_over_ours_median": n["median"] / o["median"],
        "ours_peak_traced_mib": {"median": float(np.median(ours_mem)) / 2**20, "max": max(ours_mem) / 2**20},
        "neurokit2_peak_traced_mib": {"median": float(np.median(nk_mem)) / 2**20, "max": max(nk_mem) / 2**20},
        "process_peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "goal_ms": GOAL_MS, "goal_met": o["median"] <= GOAL_MS,
        "load_average_1_5_15min_at_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "per_record": [{"record": p.name, "ours_ms": x, "neurokit2_ms": y}
                       for p, x, y in zip(paths, ours_ms, nk_ms, strict=True)],
    }
    print(f"\n{len(paths)} records (12 leads, 500 Hz, 10 s), {'one core' if pinned else 'not pinned'}, "
          "CPU time per record (best of runs):")
    print(f"  ours      median {o['median']:.1f} ms  mean {o['mean']:.1f}  p90 {o['p90']:.1f}  max {o['max']:.1f}")
    print(f"  NeuroKit2 median {n['median']:.1f} ms  mean {n['mean']:.1f}  p90 {n['p90']:.1f}  max {n['max']:.1f}"
          f"  (clean+peaks+delineate[{a.nk_method}] x 12 leads)")
    print(f"  ratio NeuroKit2 / ours (medians): {result['ratio_nk_over_ours_median']:.1f}x")
    print(f"  peak traced memory per analysis: ours {result['ours_peak_traced_mib']['max']:.1f} MiB, "
          f"NeuroKit2 {result['neurokit2_peak_traced_mib']['max']:.1f} MiB (max over records); "
          f"process peak RSS {result['process_peak_rss_mib']:.0f} MiB")
    print(f"  goal <= {GOAL_MS:.0f} ms for ours: {'met' if result['goal_met'] else 'NOT met'}")
    if result["load_average_1_5_15min_at_end"]:
        print("  machine load average (1/5/15 min) at the end: "
              + " / ".join(f"{v:.2f}" for v in result["load_average_1_5_15min_at_end"]))
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
