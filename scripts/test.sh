#!/usr/bin/env bash
# The README's test command: set up everything (scripts/setup.sh test: all the extras, the dev tools, helm), start a
# local Kafka, run the whole test suite (real broker, real ECGs).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
.venv/bin/twiwatch kafka up
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
