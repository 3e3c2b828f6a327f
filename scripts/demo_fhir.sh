#!/usr/bin/env bash
# The demo's FHIR part (scripts/demo.sh --with-fhir-server): the local HAPI FHIR server and the FHIR sink, so that the
# demo's research-only reports also land on a FHIR server an EHR client can read. Needs about 0.8 GB of memory beyond
# Kafka's 1 GB, and 25-90 s for the server to start (the first run also resolves ~300 MB of jars: setup_fhir.sh).
#   bash scripts/demo_fhir.sh start   # server up (idempotent), sink in the background; prints the URLs
#   bash scripts/demo_fhir.sh stop    # stops the sink (the server stays up: twiwatch fhir-server down)
set -euo pipefail
cd "$(dirname "$0")/.."
TW=.venv/bin/twiwatch
PORT=${TWIWATCH_FHIR_SERVER_PORT:-8080}
SINK_PORT=${TWIWATCH_FHIR_SINK_WEB_PORT:-6068}
mkdir -p .cache/demo
case "${1:-start}" in
  start)
    avail_kb=$(awk '/MemAvailable/ {print $2}' /proc/meminfo)
    if [ "${avail_kb:-0}" -lt 1048576 ]; then
      echo "the FHIR server needs about 0.8 GB of memory beyond Kafka's; only $((avail_kb / 1024)) MB are available" >&2
      exit 1
    fi
    $TW fhir-server up --port "$PORT"
    TWIWATCH_FHIR_SINK_URL="http://127.0.0.1:$PORT/fhir" TWIWATCH_FHIR_SINK_WEB_PORT="$SINK_PORT" \
      $TW fhir-sink > .cache/demo/fhir-sink.log 2>&1 &
    echo $! > .cache/demo/fhir-sink.pid
    for _ in $(seq 60); do curl -sf "http://127.0.0.1:$SINK_PORT/healthz" >/dev/null && break; sleep 1; done
    echo "FHIR sink pid $(cat .cache/demo/fhir-sink.pid) (log .cache/demo/fhir-sink.log, metrics http://127.0.0.1:$SINK_PORT/metrics)"
    echo "FHIR server: http://127.0.0.1:$PORT/fhir  (reports: http://127.0.0.1:$PORT/fhir/DiagnosticReport?_sort=-_lastUpdated)"
    ;;
  stop)
    if [ -f .cache/demo/fhir-sink.pid ]; then
      kill "$(cat .cache/demo/fhir-sink.pid)" 2>/dev/null || true
      rm -f .cache/demo/fhir-sink.pid
    fi
    ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
