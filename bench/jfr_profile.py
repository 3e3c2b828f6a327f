"""Where a JVM's request threads spend their CPU, from a JFR recording: self and inclusive shares of execution samples.

    .venv/bin/python bench/jfr_profile.py RECORDING.jfr [--threads http-nio] [--match REGEX] [--top 60]

Reads `jfr print --json --stack-depth 400 --events jdk.ExecutionSample` (the JDK's `jfr` tool; its default depth of 5
frames would hide every caller). Made for the development FHIR server's recordings from bench/fhir_server_time.py
(`--jvm-arg=-XX:FlightRecorderOptions:stackdepth=512 --jvm-arg=-XX:StartFlightRecording=filename=...,settings=profile`):
the share of samples per thread group, then the methods most often on the stack of the chosen threads.
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
from collections import Counter
from pathlib import Path

DEFAULT_MATCH = r"ca/uhn|org/hibernate/(engine|event|persister)|org/h2/(command|jdbc|mvstore/tx)|springframework/orm"


def samples(recording: Path) -> list[dict]:
    out = subprocess.run(["jfr", "print", "--json", "--stack-depth", "400", "--events", "jdk.ExecutionSample",
                          str(recording)], capture_output=True, text=True, check=True).stdout
    return json.loads(out)["recording"]["events"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("recording", type=Path)
    ap.add_argument("--threads", default="http-nio", help="count only threads whose name contains this")
    ap.add_argument("--match", default=DEFAULT_MATCH, help="inclusive shares only for methods matching this")
    ap.add_argument("--top", type=int, default=60)
    args = ap.parse_args()
    pattern = re.compile(args.match)
    groups: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    n = 0
    for event in samples(args.recording):
        values = event["values"]
        thread = (values.get("sampledThread") or {}).get("javaName") or ""
        groups[re.sub(r"\d+$", "", thread)] += 1
        if args.threads not in thread:
            continue
        n += 1
        names = [f'{f["method"]["type"]["name"]}.{f["method"]["name"]}' for f in values["stackTrace"]["frames"]]
        self_time[names[0]] += 1
        inclusive.update(set(names))
    total = sum(groups.values()) or 1
    print("threads:", ", ".join(f"{g} {100 * c / total:.0f} %" for g, c in groups.most_common(8)))
    print(f"{n} samples of threads named *{args.threads}*")
    n = n or 1
    print("--- self")
    for name, c in self_time.most_common(15):
        print(f"{100 * c / n:5.1f} % {name}")
    print("--- on the stack")
    shown = [(name, c) for name, c in inclusive.most_common() if pattern.search(name) and "$$Lambda" not in name]
    for name, c in shown[:args.top]:
        print(f"{100 * c / n:5.1f} % {name}")


if __name__ == "__main__":
    main()
