#!/usr/bin/env bash
# Encoder GPU check (docs/SPEC.md §10: the lent H200 has torch 2.11 on CUDA, onnx and CPU onnxruntime, no TensorRT, no
# network). Uses the project's venv when there is one, else the machine's python3; needs only torch, numpy, onnx
# and onnxruntime (samples/ are read without wfdb). Full run < 8 min; `--device cpu --quick` runs the same path on CPU.
#   bash scripts/gpu_check.sh [--device cuda|cpu] [--quick] [--variant coca-b50] [--checkpoint PATH] [--json PATH]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=python3
[ -x .venv/bin/python ] && PY=.venv/bin/python
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec timeout 470 "$PY" bench/gpu_check.py "$@"
