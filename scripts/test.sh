#!/usr/bin/env bash
# The README's test command: set up everything (scripts/setup.sh test: all the extras, the dev tools, helm), start a
# local Kafka, run the whole test suite (real broker, real ECGs).
set -euo pipefail
cd "$(dirname "$0")/.."
# A checkout keeps its broker, worker state and caches in .cache (installed, the defaults are the XDG folders).
export TWIWATCH_CACHE_DIR=${TWIWATCH_CACHE_DIR:-$PWD/.cache} TWIWATCH_DATA_DIR=${TWIWATCH_DATA_DIR:-$PWD/.cache/worker}
export TWIWATCH_ENCODER_CACHE_DIR=${TWIWATCH_ENCODER_CACHE_DIR:-$PWD/.cache/tensorrt}
bash scripts/setup.sh test
# FHIR delivery's real components: HAPI FHIR from Maven Central, Ory Hydra built from the Go module proxy
bash scripts/setup_fhir.sh
echo "== linters: ruff and the import-linter layer contracts (pyproject.toml)"
.venv/bin/ruff check .
.venv/bin/lint-imports
.venv/bin/twiwatch kafka up
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
