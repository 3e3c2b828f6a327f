#!/usr/bin/env bash
# Set up a fresh machine for twiwatch: Python venv with the project and its test deps, and the Kafka broker jars
# from Maven Central. Idempotent and cached: the venv is rebuilt only when pyproject.toml changes.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
stamp=".venv/.twiwatch-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "== setting up .venv (pyproject.toml changed or first run)"
  rm -rf .venv
  "$PY" -m venv .venv
  .venv/bin/pip install -q -U pip wheel
  .venv/bin/pip install -q -e '.[test,train,cpu,eval]'
  touch "$stamp"
fi
command -v mvn >/dev/null || { echo "Maven (mvn) is required to resolve Apache Kafka from Maven Central" >&2; exit 1; }
command -v java >/dev/null || { echo "Java 17+ is required to run the Kafka broker" >&2; exit 1; }
echo "== setup done"
