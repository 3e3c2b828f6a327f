"""twiwatch stream: the composition root (CLI, config, Kafka topics, the faust worker, replay, e2e)."""
