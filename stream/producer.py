"""kafka-python producers for the edges (replay, e2e, bridges): idempotent, acks=all, the one size limit."""
from __future__ import annotations

from kafka import KafkaProducer

from stream.config import KafkaSettings
from stream.topics import HEADROOM


def make_producer(s: KafkaSettings, client_id: str = "twiwatch-producer", **overrides) -> KafkaProducer:
    opts = dict(
        bootstrap_servers=s.bootstrap,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        max_request_size=s.max_message_bytes + HEADROOM,
        linger_ms=5,
        compression_type=None,
        retries=5,
    )
    opts.update(overrides)
    return KafkaProducer(**opts)
