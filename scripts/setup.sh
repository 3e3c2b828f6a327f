#!/usr/bin/env bash
# Set up a fresh machine for twiwatch: Python venv with the project and its test deps, and the Kafka broker jars
# from Maven Central. Idempotent and cached: the venv is rebuilt only when pyproject.toml changes.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
"$PY" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || {
  echo "Python 3.11+ with the venv module is required (found: $("$PY" --version 2>&1)); set PYTHON=..." >&2; exit 1; }
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
# helm, for the chart's tests (tests/test_helm_chart.py): built from the Go module proxy, cached in .cache/bin
HELM_VERSION=v3.19.0
if [ ! -x .cache/bin/helm ] || [ ! -f ".cache/bin/.helm-$HELM_VERSION" ]; then
  command -v go >/dev/null || { echo "Go is required to build helm (go install helm.sh/helm/v3/cmd/helm)" >&2; exit 1; }
  echo "== building helm $HELM_VERSION into .cache/bin (first run only)"
  GOBIN="$PWD/.cache/bin" GOFLAGS=-modcacherw go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  touch ".cache/bin/.helm-$HELM_VERSION"
fi
echo "== setup done"
