"""`twiwatch mllp`: the MLLP bridge (integrations.hl7.mllp_bridge) wired to Kafka and to its settings.

Values go to `topic` as the original bytes keyed by the keyed patient hash; refused messages go to
`deadletter_topic` in the project's dead-letter layout (stream.deadletter: original bytes, reason in headers).
"""
from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from functools import partial
from typing import Any

from kafka import KafkaProducer

from engine.record import EcgRecord
from integrations.chunk import Chunk
from integrations.decode import decode_message
from integrations.hl7.mllp_bridge import MllpBridge
from integrations.hl7.mllp_framing import DEFAULT_MAX_MESSAGE_BYTES
from integrations.identity import patient_key, stream_key
from stream.config import MllpSettings
from stream.deadletter import PREFIX, deadletter_record
from stream.topics import HEADROOM, edge_topic_specs, ensure_topics

log = logging.getLogger("twiwatch.mllp")


def kafka_callbacks(
    producer: KafkaProducer,
    topic: str,
    deadletter_topic: str,
    *,
    patient_hash_secret: str,
    max_message_bytes: int,
    timeout_s: float = 30.0,
) -> tuple[Callable[[bytes, bytes | None], Any], Callable[..., Any], Callable[[EcgRecord | Chunk], bytes]]:
    """(produce, deadletter, key_for) for MllpBridge on a kafka-python producer (acks='all').

    Each callback blocks until the broker confirmed the write (future.get), which the bridge runs in its pool.
    """
    def produce(raw: bytes, key: bytes | None) -> None:
        producer.send(topic, value=raw, key=key).get(timeout=timeout_s)

    def deadletter(raw: bytes, reason: str, error_class: str, *, code: str, original_size: int,
                   original_sha256: str) -> None:
        value, headers = deadletter_record(raw, reason=reason, error_class=error_class, code=code,
                                           source_topic=None, max_message_bytes=max_message_bytes)
        if original_size != len(raw):
            # The bridge streamed an oversized frame and kept only its head: describe the whole message.
            fix = {PREFIX + "original.size": str(original_size).encode(),
                   PREFIX + "original.sha256": original_sha256.encode(), PREFIX + "original.truncated": b"True"}
            headers = [(k, fix.get(k, v)) for k, v in headers]
        producer.send(deadletter_topic, value=value, headers=headers).get(timeout=timeout_s)

    def key_for(decoded: EcgRecord | Chunk) -> bytes:
        if isinstance(decoded, Chunk):  # one bed's chunks on one partition, in order
            return stream_key(decoded.stream_key, patient_hash_secret).encode("ascii")
        return patient_key(decoded.patient_id, patient_hash_secret, decoded.source_id,
                           system=decoded.patient_system).encode("ascii")

    return produce, deadletter, key_for


def serve(
    *,
    host: str,
    port: int,
    bootstrap: str,
    topic: str,
    deadletter_topic: str,
    patient_hash_secret: str,
    web_port: int | None = None,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    decode: Callable[[bytes], EcgRecord | Chunk] | None = None,
    produce_timeout_s: float = 30.0,
    workers: int | None = None,
    producer: KafkaProducer | None = None,
) -> None:
    """Serve MLLP on host:port until SIGINT/SIGTERM.

    host, port: MLLP listen address (settings mllp_host, mllp_port).
    bootstrap: Kafka bootstrap servers. topic: raw HL7 topic (topic_hl7_raw). deadletter_topic: topic_deadletter.
    patient_hash_secret: HMAC key for the Kafka key (settings patient_hash_secret, unwrapped).
    web_port: /healthz and /metrics port (mllp_web_port); None disables HTTP.
    max_message_bytes: the one size limit (docs/SPEC.md §10). decode: the check before the ACK, with the site's
    sender rules, sample-rate codes and time zone (`serve_bridge` builds it from the settings).
    produce_timeout_s: longest wait for Kafka
    before answering AR. workers: decode/produce thread pool size. producer: a ready kafka-python producer
    (e.g. stream.producer.make_producer); by default one is built with acks='all' and idempotence.
    """
    own = producer is None
    if producer is None:
        producer = KafkaProducer(
            bootstrap_servers=bootstrap, client_id="twiwatch-mllp", acks="all", enable_idempotence=True,
            max_request_size=max_message_bytes + HEADROOM, linger_ms=2, retries=5,
            # fail a send (missing topic, no broker) inside the bridge's wait, so the AR names the cause
            max_block_ms=int(produce_timeout_s * 500),
        )
    produce, deadletter, key_for = kafka_callbacks(
        producer, topic, deadletter_topic, patient_hash_secret=patient_hash_secret,
        max_message_bytes=max_message_bytes, timeout_s=produce_timeout_s,
    )
    bridge = MllpBridge(
        host, port, produce, deadletter, key_for, max_message_bytes=max_message_bytes,
        decode=decode, produce_timeout_s=produce_timeout_s,
        web_port=web_port, workers=workers,
    )

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await bridge.start()
        log.info("MLLP bridge on %s:%s → %s (metrics on %s)", host, bridge.port, topic, bridge.web_port)
        await stop.wait()
        await bridge.stop()

    try:
        asyncio.run(main())
    finally:
        if own:
            producer.flush(timeout=10)
            producer.close(timeout=10)


def serve_bridge(s: MllpSettings, host: str | None = None, port: int | None = None) -> None:
    """The CLI entry: settings in, a running bridge until SIGINT/SIGTERM."""
    ensure_topics(s, edge_topic_specs(s))
    serve(
        host=host or s.mllp_host, port=port or s.mllp_port, bootstrap=s.bootstrap, topic=s.topic_hl7_raw,
        deadletter_topic=s.topic_deadletter, patient_hash_secret=s.patient_hash_secret.get_secret_value(),
        web_port=s.mllp_web_port, max_message_bytes=s.max_message_bytes,
        decode=partial(decode_message, fmt="hl7", rules=s.sender_rules(), **s.hl7_decode_options()),
    )
