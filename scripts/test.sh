#!/usr/bin/env bash
# The README's test command: set up, start a local Kafka, run the whole test suite (real broker, real ECGs).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/twiwatch kafka up
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
