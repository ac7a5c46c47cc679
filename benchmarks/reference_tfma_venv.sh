#!/usr/bin/env bash
# Build a separate virtualenv with TensorFlow Model Analysis (the reference
# for model validation) for benchmarks/bench_evaluation.py --reference-python.
# Never part of `make test`; the project venv stays free of TFMA/TensorFlow.
#
#   bash benchmarks/reference_tfma_venv.sh [VENV_DIR]   (default: /tmp/ri-reference-tfma)
#   REF_TFMA_TIMEOUT=1800 bash benchmarks/reference_tfma_venv.sh
set -euo pipefail
VENV_DIR="${1:-/tmp/ri-reference-tfma}"
PY="${PYTHON:-python3}"
TIMEOUT="${REF_TFMA_TIMEOUT:-1800}"
if [ ! -x "$VENV_DIR/bin/python" ]; then
  "$PY" -m venv "$VENV_DIR"
  "$VENV_DIR/bin/pip" install -q --upgrade pip
fi
# pip picks the apache-beam / tensorflow / pandas versions TFMA accepts
# (TFMA 0.52 here: Beam 2.77, pandas 2.3); scikit-learn and psutil are for the
# benchmark's value check and peak RSS.
timeout "$TIMEOUT" "$VENV_DIR/bin/pip" install -q --no-cache-dir \
  tensorflow-model-analysis scikit-learn psutil
"$VENV_DIR/bin/python" - <<'PY'
import os
import apache_beam, tensorflow_model_analysis as tfma, tensorflow
print("reference venv ok: beam", apache_beam.__version__, "tfma", tfma.__version__,
      "tf", tensorflow.__version__, flush=True)
os._exit(0)  # TF can crash at interpreter exit (see docs/REFERENCES)
PY
