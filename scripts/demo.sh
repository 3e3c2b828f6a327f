#!/usr/bin/env bash
# The README's demo command: local Kafka, the stream worker and the MLLP bridge, then real ECGs replayed
# (half HL7 v2, half FHIR) and the research-only DiagnosticReports shown as they arrive. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
TW=.venv/bin/twiwatch
$TW kafka up
$TW topics create
mkdir -p .cache/demo
$TW worker > .cache/demo/worker.log 2>&1 &
WORKER=$!
$TW mllp > .cache/demo/mllp.log 2>&1 &
MLLP=$!
trap 'kill $WORKER $MLLP 2>/dev/null; wait $WORKER $MLLP 2>/dev/null; echo "demo stopped (Kafka still up: twiwatch kafka down)"' EXIT
echo "worker pid $WORKER (log .cache/demo/worker.log, metrics http://127.0.0.1:6066/metrics)"
echo "MLLP bridge pid $MLLP on 127.0.0.1:2575 (log .cache/demo/mllp.log, metrics http://127.0.0.1:6067/metrics)"
$TW replay samples --format mixed --rate "${RATE:-4}"
$TW reports watch --until-idle 20
