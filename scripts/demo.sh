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
# A STAND-IN for ECG-R1 (the 8B model needs a GPU): it replays ECG-R1-format outputs so that flagged reports show
# the partial -> preliminary lifecycle. Its answers are canned, not a reading of the ECG, and the reports say so.
# It is served by our real ECG-R1 serving shim (docs/REASONER.md), the same process that fronts vLLM on a GPU.
$TW reasoner serve --standin --standin-output lateral-twi --standin-delay 1.5 --port "${STANDIN_PORT:-8011}" \
  > .cache/demo/standin.log 2>&1 &
STANDIN=$!
TWIWATCH_REASONER_URL="http://127.0.0.1:${STANDIN_PORT:-8011}" TWIWATCH_ENCODER_MANIFEST=models/triage-s50/encoder.json \
  $TW worker > .cache/demo/worker.log 2>&1 &
WORKER=$!
$TW mllp > .cache/demo/mllp.log 2>&1 &
MLLP=$!
trap 'kill $WORKER $MLLP $STANDIN 2>/dev/null; wait $WORKER $MLLP $STANDIN 2>/dev/null; echo "demo stopped (Kafka still up: twiwatch kafka down)"' EXIT
echo "worker pid $WORKER (log .cache/demo/worker.log, metrics http://127.0.0.1:6066/metrics)"
echo "MLLP bridge pid $MLLP on 127.0.0.1:2575 (log .cache/demo/mllp.log, metrics http://127.0.0.1:6067/metrics)"
echo "ECG-R1 serving shim with the STAND-IN generator (canned outputs, not the model) pid $STANDIN on 127.0.0.1:${STANDIN_PORT:-8011}"
for _ in $(seq 60); do curl -sf http://127.0.0.1:6066/healthz >/dev/null && break; sleep 1; done
START=$(date +%s%3N)
$TW replay samples --format mixed --rate "${RATE:-4}" 2> .cache/demo/replay.log &
REPLAY=$!
$TW reports watch --since-ms "$START" --until-idle 25
wait $REPLAY
