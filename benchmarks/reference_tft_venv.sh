#!/usr/bin/env bash
# Build a separate virtualenv with Beam's reference MLTransform dependencies
# (tensorflow-transform, which pins its own tensorflow/numpy/pyarrow) for
# benchmarks/bench_mltransform.py and benchmarks/compat.py --reference-python.
# Never part of `make test`; the project venv stays free of tensorflow_transform.
#
#   bash benchmarks/reference_tft_venv.sh [VENV_DIR]   (default: /tmp/ri-reference-tft)
#   REF_TFT_TIMEOUT=1800 bash benchmarks/reference_tft_venv.sh
set -euo pipefail
VENV_DIR="${1:-/tmp/ri-reference-tft}"
PY="${PYTHON:-python3}"
TIMEOUT="${REF_TFT_TIMEOUT:-1800}"
if [ ! -x "$VENV_DIR/bin/python" ]; then
  "$PY" -m venv "$VENV_DIR"
  "$VENV_DIR/bin/pip" install -q --upgrade pip
fi
# Let pip pick the apache-beam/tensorflow versions tensorflow-transform accepts;
# pytest/parameterized are for running Beam's own *_test.py files.
timeout "$TIMEOUT" "$VENV_DIR/bin/pip" install -q --no-cache-dir \
  tensorflow-transform "apache-beam[gcp]" pytest pytest-timeout parameterized psutil
"$VENV_DIR/bin/python" - <<'PY'
import apache_beam, tensorflow_transform, tensorflow
print("reference venv ok: beam", apache_beam.__version__, "tft", tensorflow_transform.__version__,
      "tf", tensorflow.__version__)
PY
