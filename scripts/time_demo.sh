#!/usr/bin/env bash
# Measures the demo's budget (README, "The two commands"): the wall time of ./scripts/demo.sh, from invoking it to its
# exit, in a fresh clone of this repository's HEAD.
#   cold: empty pip, uv and Maven caches (fresh PIP_CACHE_DIR, UV_CACHE_DIR and maven.repo.local), no .venv, no .cache
#   warm: a second run in the same clone (venv, broker jars and caches in place; the broker the first run left up)
# Usage: scripts/time_demo.sh [CLONE_DIR]   (default: a temporary folder, removed afterwards; a named one is kept)
# The demo's ports follow the usual variables (TWIWATCH_KAFKA_PORT, ...), so this can run beside another broker.
# The broker is stopped at the end and the caches removed; the two runs' output is kept (the path is printed).
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
clone=${1:-$tmp/clone}
[ ! -e "$clone" ] || { echo "$clone exists: give a new folder" >&2; exit 2; }
# The clone's own .cache (broker jars, worker state), not a shared one: a cold run starts from nothing.
unset TWIWATCH_CACHE_DIR TWIWATCH_DATA_DIR
export PIP_CACHE_DIR=$tmp/pip-cache UV_CACHE_DIR=$tmp/uv-cache
export MAVEN_OPTS="${MAVEN_OPTS:+$MAVEN_OPTS }-Dmaven.repo.local=$tmp/m2-repository"
mkdir -p "$PIP_CACHE_DIR" "$UV_CACHE_DIR" "$tmp/m2-repository"
git clone -q "$src" "$clone"
echo "== timing ./scripts/demo.sh in a fresh clone of $(git -C "$src" rev-parse --short HEAD) ($clone)"
cleanup() {
  [ ! -x "$clone/.venv/bin/twiwatch" ] || (cd "$clone" && .venv/bin/twiwatch kafka down) || true
  rm -rf "$tmp/pip-cache" "$tmp/uv-cache" "$tmp/m2-repository" "$tmp/clone"
  echo "== the runs' output: $tmp/cold.log, $tmp/warm.log"
}
trap cleanup EXIT
run() {  # run NAME: time one demo run, its output in $tmp/NAME.log
  local t0 t1
  t0=$(date +%s.%N)
  (cd "$clone" && ./scripts/demo.sh) > "$tmp/$1.log" 2>&1 || { echo "the $1 run failed:" >&2; tail -n 30 "$tmp/$1.log" >&2; exit 1; }
  t1=$(date +%s.%N)
  awk -v n="$1" -v a="$t0" -v b="$t1" 'BEGIN { printf "%s: %.1f s\n", n, b - a }' | tee -a "$tmp/times"
  grep -aE '^== |Kafka [0-9.]+ (up|already)|report version\(s\) shown|^demo stopped' "$tmp/$1.log" | sed 's/^/    /'
}
run cold
run warm
echo "== $(date -u +%F): cold $(sed -n 's/^cold: //p' "$tmp/times"), warm $(sed -n 's/^warm: //p' "$tmp/times") ($(nproc) CPUs)"
