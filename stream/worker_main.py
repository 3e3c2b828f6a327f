"""`twiwatch worker`: the faust-streaming worker process (composition: `stream.app`)."""
from __future__ import annotations

import sys

from stream.app import build_app
from stream.config import WorkerSettings
from stream.topics import ensure_topics, topic_specs


def run_worker(s: WorkerSettings, loglevel: str = "info") -> None:
    from faust.worker import Worker

    ensure_topics(s, topic_specs(s))
    app = build_app(s)
    sys.argv = [sys.argv[0], "worker"]  # faust's Worker parses argv; ours are already consumed
    Worker(app, loglevel=loglevel, quiet=True).execute_from_commandline()
