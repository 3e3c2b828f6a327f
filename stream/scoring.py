"""The encoder and its triage head in the worker: micro-batched scoring of analysed ECGs.

The measured criteria stay the primary evidence; the head adds scores and a sentence when it disagrees. Inference
runs in one dedicated thread so the event loop (heartbeats, other agents) does not wait on the model, and at most one
batch is in flight per worker: the stream's bounded buffer is the back-pressure. The analysis itself runs on the
loop (about 20 ms per 10-s ECG, 66 ms per 60-s strip here), well inside the broker session timeout.
"""
from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from engine.encoder.adapter import AdapterError, adapt
from engine.encoder.runtime import EncoderRuntime
from engine.encoder.runtime_choice import select_runtime
from engine.encoder.triage_head import HeadThresholds, TriageScores, head_disagrees
from stream import metrics
from stream.config import EncoderSettings
from stream.stages import Analysed

log = logging.getLogger("twiwatch.scoring")


class Scorer:
    def __init__(self, runtime: EncoderRuntime, manifest: dict[str, Any]) -> None:
        self.runtime = runtime
        self.thresholds = HeadThresholds.from_manifest(manifest)
        precision = runtime.describe().get("precision", "fp32")
        # an INT8 model is another numerical model: the report says which one scored
        suffix = "" if precision == "fp32" else f" ({precision})"
        self.model = f"{manifest.get('variant', 'encoder')} triage head{suffix}"
        self.versions = {"encoder": str(manifest.get("model_sha256", "unknown"))[:12]}
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="encoder")

    def score(self, items: list[Analysed]) -> list[dict[str, Any] | None]:
        """Head results per item, in order; None where the record cannot feed the model (said in the log)."""
        signals, index = [], []
        for i, item in enumerate(items):
            try:
                signals.append(adapt(item.record).signal)
                index.append(i)
            except AdapterError as exc:
                log.info("encoder skipped one ECG: %s", exc.reason)
        out: list[dict[str, Any] | None] = [None] * len(items)
        if not signals:
            return out
        _, head = self.runtime.embed(np.stack(signals))
        metrics.ENCODER_BATCH.observe(len(signals))
        if head is None:
            return out
        for row, i in zip(head, index, strict=True):
            scores = TriageScores.from_row(row)
            out[i] = {"model": self.model, "twi_present": scores.twi_present,
                      "ischemic_vs_secondary": scores.ischemic_vs_secondary,
                      "disagreement": head_disagrees(items[i].analysis, scores, self.thresholds)}
            if out[i]["disagreement"]:
                metrics.HEAD_DISAGREEMENTS.inc()
        return out

    async def score_async(self, items: list[Analysed]) -> list[dict[str, Any] | None]:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self.score, items)


def make_scorer(s: EncoderSettings) -> Scorer | None:
    if not s.encoder_manifest:
        return None
    from engine.encoder.manifest import load_manifest

    manifest = load_manifest(s.encoder_manifest)
    options: dict[str, Any] = {"cache_dir": s.encoder_cache_dir}
    if s.encoder_precision:
        options["precision"] = s.encoder_precision
    if s.encoder_threads:
        options["threads"] = s.encoder_threads
    runtime = select_runtime(s.encoder_manifest, s.encoder_runtime or None, **options)
    log.info("encoder runtime %s (%s)", type(runtime).__name__, runtime.describe())
    return Scorer(runtime, manifest)
