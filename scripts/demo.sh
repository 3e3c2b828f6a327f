#!/usr/bin/env bash
# The README's demo command: local Kafka, the stream worker and the MLLP bridge, then real ECGs replayed
# (half HL7 v2, half FHIR) with a stitched monitor stream, and the research-only DiagnosticReports shown as they
# arrive. Ctrl-C stops everything.
# Installs only what it runs (scripts/setup.sh demo: no torch, no helm). Ports follow the usual settings, so the demo
# can run beside another broker: TWIWATCH_KAFKA_PORT, TWIWATCH_WORKER_WEB_PORT, TWIWATCH_MLLP_PORT,
# TWIWATCH_MLLP_WEB_PORT, TWIWATCH_DASHBOARD_PORT (the review dashboard, default 8070), and STANDIN_PORT for the ECG-R1
# stand-in (default TWIWATCH_REASONER_SERVE_PORT or 8011).
set -euo pipefail
cd "$(dirname "$0")/.."
# A checkout keeps its broker, worker state and caches in .cache (installed, the defaults are the XDG folders).
export TWIWATCH_CACHE_DIR=${TWIWATCH_CACHE_DIR:-$PWD/.cache} TWIWATCH_DATA_DIR=${TWIWATCH_DATA_DIR:-$PWD/.cache/worker}
export TWIWATCH_ENCODER_CACHE_DIR=${TWIWATCH_ENCODER_CACHE_DIR:-$PWD/.cache/tensorrt}
step() { echo "== [$SECONDS s] $*"; }
# --with-fhir-server: the reports also land on a local HAPI FHIR server through the FHIR sink (needs ~0.8 GB more
# memory and 25-90 s for the server to start; README "Reports in the EHR").
WITH_FHIR=0; [ "${1:-}" = "--with-fhir-server" ] && WITH_FHIR=1
step "setting up (scripts/setup.sh demo)"
bash scripts/setup.sh demo
TW=.venv/bin/twiwatch
KAFKA_PORT=${TWIWATCH_KAFKA_PORT:-9092}
WORKER_WEB_PORT=${TWIWATCH_WORKER_WEB_PORT:-6066}
MLLP_HOST=${TWIWATCH_MLLP_HOST:-127.0.0.1}
MLLP_PORT=${TWIWATCH_MLLP_PORT:-2575}
MLLP_WEB_PORT=${TWIWATCH_MLLP_WEB_PORT:-6067}
STANDIN_PORT=${STANDIN_PORT:-${TWIWATCH_REASONER_SERVE_PORT:-8011}}
DASHBOARD_PORT=${TWIWATCH_DASHBOARD_PORT:-8070}
# The dashboard's store stays between demo runs (its consumer group's offsets on the broker do too).
export TWIWATCH_DASHBOARD_DATA_DIR=${TWIWATCH_DASHBOARD_DATA_DIR:-$PWD/.cache/demo/dashboard}
step "starting Kafka on 127.0.0.1:$KAFKA_PORT"
$TW kafka up
$TW topics create
mkdir -p .cache/demo
step "starting the ECG-R1 stand-in, the worker and the MLLP bridge"
# A STAND-IN for ECG-R1 (the 8B model needs a GPU): it replays ECG-R1-format outputs so that flagged reports show
# the partial -> preliminary lifecycle. Its answers are canned, not a reading of the ECG, and the reports say so.
# It is served by our real ECG-R1 serving shim (docs/REASONER.md), the same process that fronts vLLM on a GPU.
$TW reasoner serve --standin --standin-output lateral-twi --standin-delay 1.5 --port "$STANDIN_PORT" \
  > .cache/demo/standin.log 2>&1 &
STANDIN=$!
# Monitor feeds: the chunk-feed rules of the replayed monitors (README "Monitor feeds"). Two demo-only settings let a
# 6-minute stitched stream show a whole episode: a 2-minute baseline (default 5) and 10 s of silence to close it
# (default 2 minutes).
export TWIWATCH_SENDERS="$(.venv/bin/python -c 'from stream.devtools.monitors import rules_json; print(rules_json())')"
TWIWATCH_MONITOR_BASELINE_S=${TWIWATCH_MONITOR_BASELINE_S:-120} TWIWATCH_MONITOR_SILENCE_S=${TWIWATCH_MONITOR_SILENCE_S:-10} \
TWIWATCH_REASONER_URL="http://127.0.0.1:$STANDIN_PORT" TWIWATCH_ENCODER_MANIFEST=models/triage-s50/encoder.json \
  $TW worker > .cache/demo/worker.log 2>&1 &
WORKER=$!
$TW mllp > .cache/demo/mllp.log 2>&1 &
MLLP=$!
# The review dashboard, with a demo login (DEMO ONLY: the password is printed and kept in .cache/demo).
LOGIN_FILE=.cache/demo/dashboard-login.txt
if [ ! -s "$LOGIN_FILE" ]; then
  DEMO_PASSWORD=$(.venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(12))')
  echo "$DEMO_PASSWORD" | $TW users add demo --role admin --password-stdin > .cache/demo/users.log 2>&1 \
    && echo "$DEMO_PASSWORD" > "$LOGIN_FILE" \
    || echo "could not create the demo login (see .cache/demo/users.log)" >&2
fi
$TW dashboard --port "$DASHBOARD_PORT" > .cache/demo/dashboard.log 2>&1 &
DASHBOARD=$!
if [ "$WITH_FHIR" = 1 ]; then step "starting the FHIR server and the FHIR sink"; bash scripts/demo_fhir.sh start; fi
stop_all() {  # SIGTERM, then SIGKILL what has not exited 30 s later (and say so: the demo then exits non-zero)
  local status=$? alive pid
  [ "$WITH_FHIR" = 1 ] && bash scripts/demo_fhir.sh stop
  kill $WORKER $MLLP $STANDIN $DASHBOARD 2>/dev/null || true
  for _ in $(seq 60); do
    alive=""
    for pid in $WORKER $MLLP $STANDIN $DASHBOARD; do kill -0 "$pid" 2>/dev/null && alive="$alive $pid"; done
    [ -n "$alive" ] || break
    sleep 0.5
  done
  if [ -n "$alive" ]; then
    echo "pid$alive did not stop within 30 s of SIGTERM (see .cache/demo/*.log): killed" >&2
    kill -9 $alive 2>/dev/null || true
    status=1
  fi
  wait $WORKER $MLLP $STANDIN $DASHBOARD 2>/dev/null || true
  echo "demo stopped after $SECONDS s (Kafka still up on 127.0.0.1:$KAFKA_PORT: $TW kafka down, with the same TWIWATCH_KAFKA_PORT)"
  exit $status
}
trap stop_all EXIT
echo "worker pid $WORKER (log .cache/demo/worker.log, metrics http://127.0.0.1:$WORKER_WEB_PORT/metrics)"
echo "MLLP bridge pid $MLLP on $MLLP_HOST:$MLLP_PORT (log .cache/demo/mllp.log, metrics http://127.0.0.1:$MLLP_WEB_PORT/metrics)"
echo "ECG-R1 serving shim with the STAND-IN generator (canned outputs, not the model) pid $STANDIN on 127.0.0.1:$STANDIN_PORT"
echo "review dashboard pid $DASHBOARD: http://127.0.0.1:$DASHBOARD_PORT/  login: demo / $(cat "$LOGIN_FILE" 2>/dev/null || echo '?') (DEMO ONLY; log .cache/demo/dashboard.log)"
for i in $(seq 120); do
  curl -sf "http://127.0.0.1:$WORKER_WEB_PORT/healthz" >/dev/null && break
  for pid in $WORKER $MLLP $STANDIN $DASHBOARD; do
    kill -0 "$pid" 2>/dev/null || { echo "a demo process exited early (pid $pid); the logs' tails:" >&2
      tail -n 15 .cache/demo/*.log >&2; exit 1; }
  done
  [ "$i" -lt 120 ] || { echo "the worker did not answer on :$WORKER_WEB_PORT/healthz in 60 s; see .cache/demo/worker.log" >&2; exit 1; }
  sleep 0.5
done
step "worker ready; replaying the shipped ECGs (strips, half HL7 v2, half FHIR) and a STITCHED monitor stream"
# The stitched stream: a PTB-XL patient's serial ECGs as one bedside-monitor stream in 1-s PoCD chunks, each strip
# repeated 3 minutes (event time, sent at once). It tests the streaming path (windows, baseline, persistence, one
# report per episode), not the detector: a real monitor never repeats a strip.
START=$(date +%s%3N)
$TW replay samples --format mixed --rate "${RATE:-4}" 2> .cache/demo/replay.log &
REPLAY=$!
$TW replay --stitched --speed 0 2> .cache/demo/replay-monitors.log &
MONITORS=$!
# Reports follow their ECG by about 1 s (a flagged one's version 2 by the stand-in's 1.5 s more); the first one can
# take several seconds on a busy 2-CPU machine (replay start-up, the encoder's first batch): 15 s without one is done.
$TW reports watch --since-ms "$START" --until-idle "${UNTIL_IDLE:-15}"
wait $REPLAY $MONITORS
echo "$(curl -s "http://127.0.0.1:$WORKER_WEB_PORT/metrics" | awk '/^twiwatch_monitor_windows_total/ {n += $2} END {print n + 0}') monitor windows analysed (trend points on ecg.monitor.trends); \
other monitor feeds: $TW replay --monitors 4 --speed 10 (README, Monitor feeds)"
if curl -sf "http://127.0.0.1:$DASHBOARD_PORT/healthz" >/dev/null; then
  alerts=$(curl -s "http://127.0.0.1:$DASHBOARD_PORT/metrics" | awk '/^twiwatch_dashboard_alerts\{/ {n += $2} END {print n + 0}')
  echo "$alerts alert(s) in the review dashboard: http://127.0.0.1:$DASHBOARD_PORT/ (login demo / $(cat "$LOGIN_FILE"))"
else
  echo "the review dashboard is not healthy; see .cache/demo/dashboard.log" >&2
fi
step "done"
if [ -t 0 ] && [ "${DEMO_EXIT:-0}" != 1 ]; then  # interactive: keep the dashboard (and the rest) up for a look
  echo "the demo keeps running for the dashboard; Ctrl-C stops everything (DEMO_EXIT=1 exits right away)"
  wait $DASHBOARD || true
fi
