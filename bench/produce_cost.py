"""CPU of the worker's Kafka producer per message: `python -m bench.produce_cost [--json PATH] [--rate R]`
(issue: beds per worker process; docs/BENCHMARKS.md "Beds per worker").

The worker's producer is aiokafka (under faust). This sends 4,100-byte messages (the size of a bed's 1-s chunk on
the chunks topic) to an isolated topic on the local broker with acks=all, as the worker does, at `--rate` messages
a second (the pace of a real-time feed) for linger 0, 5 (the worker's default) and 20 ms, and once as a burst (a
backlog being drained); the process's own CPU (user + system) per message is reported. The pace itself costs CPU
(an event-loop wake-up per message); that is measured alone (`pace_only_us`) and subtracted (`producer_us`).
What it shows: a produce request, not a message, is what costs; a batch of several messages costs about what one
message costs.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import time
import uuid
from pathlib import Path

VALUE = os.urandom(4100)


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


async def _pace_only(n: int, rate: float) -> float:
    started = _cpu()
    for _ in range(n):
        await asyncio.sleep(1 / rate)
    return (_cpu() - started) / n * 1e6


async def _produce(bootstrap: str, topic: str, linger_ms: int, n: int, rate: float | None) -> float:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=linger_ms, acks="all",
                                max_batch_size=1024 * 1024)
    await producer.start()
    try:
        for _ in range(50):  # warm-up: metadata, connection
            await producer.send(topic, VALUE)
        await producer.flush()
        started = _cpu()
        for i in range(n):
            await producer.send(topic, VALUE, key=b"bed-%d" % (i % 100))
            await asyncio.sleep(1 / rate if rate else 0)
        await producer.flush()
        return (_cpu() - started) / n * 1e6
    finally:
        await producer.stop()


async def run(bootstrap: str, topic: str, rate: float, n: int) -> dict:
    pace = await _pace_only(n, rate)
    burst = await _produce(bootstrap, topic, 5, n, None)
    paced = {}
    for linger in (0, 5, 20):
        total = await _produce(bootstrap, topic, linger, n, rate)
        paced[f"linger_{linger}ms"] = {"total_us": round(total), "producer_us": round(total - pace)}
    return {"pace_only_us": round(pace), "burst_linger_5ms_us": round(burst), f"paced_{rate:g}_per_s": paced}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path)
    ap.add_argument("--rate", type=float, default=250.0, help="messages per second while paced")
    ap.add_argument("--messages", type=int, default=2000)
    args = ap.parse_args()
    from kafka.admin import KafkaAdminClient, NewTopic

    from stream.config import ToolSettings

    bootstrap = ToolSettings().bootstrap
    topic = f"bench-produce-cost-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(topic, 1, 1)])
    try:
        result = asyncio.run(run(bootstrap, topic, args.rate, args.messages))
    finally:
        admin.delete_topics([topic])
        admin.close()
    result.update({"message_bytes": len(VALUE), "messages": args.messages, "acks": "all",
                   "loadavg": [round(x, 2) for x in os.getloadavg()], "python": platform.python_version(),
                   "command": "python -m bench.produce_cost " + (f"--json {args.json}" if args.json else ""),
                   "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "method": __doc__})
    print(json.dumps({k: v for k, v in result.items() if k != "method"}, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
