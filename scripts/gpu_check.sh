#!/usr/bin/env bash
# Every GPU check and measurement of rnn_ff in one command (at most ~8 minutes on one H200):
#
#     bash scripts/gpu_check.sh                 # writes outputs/gpu_check/summary.md and summary.json
#     bash scripts/gpu_check.sh --cpu-dry-run   # the same stages on the CPU at tiny sizes (plumbing only)
#
# The stages, their timeouts and the summary are in scripts/gpu_check.py. A machine without
# network or without hydra-core, omegaconf and antlr4 gets them from wheels carried in .whl/
# (installed into /tmp/rnn_ff_site); rnn_ff, train.py and scripts/ are imported from this
# checkout through PYTHONPATH, so nothing has to be pip-installed.
set -uo pipefail
cd "$(dirname "$0")/.."

PYTHON=$(command -v python3 || command -v python) || { echo "error: neither python3 nor python found" >&2; exit 2; }
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if compgen -G ".whl/*.whl" > /dev/null; then
    SITE=/tmp/rnn_ff_site
    if "$PYTHON" -m pip install -q --disable-pip-version-check --no-index --no-deps --no-compile --no-cache-dir \
            --upgrade --target "$SITE" .whl/*.whl; then
        export PYTHONPATH="$SITE:$PYTHONPATH"
        echo "installed $(ls .whl | tr '\n' ' ')into $SITE"
    else
        echo "warning: installing .whl/*.whl failed; going on with what is installed" >&2
    fi
fi
exec "$PYTHON" scripts/gpu_check.py "$@"
