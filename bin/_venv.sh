# Sourced by bin/run and bin/test: create the project's virtualenv once, then reuse it.
#
# The venv lives outside the clone, keyed by a hash of requirements.txt, so a fresh
# clone (or CI) reuses it for as long as the requirements do not change.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python3.11}
if ! command -v "$PYTHON" >/dev/null; then
  echo "Petsite needs Python 3.11 (PyTorch 2.14 wheels); set PYTHON=/path/to/python3.11." >&2
  exit 1
fi
REQ_HASH=$(sha256sum "$ROOT/requirements.txt" | cut -c1-16)
VENV=${PETSITE_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/petsite/venv-$REQ_HASH}

if [ ! -f "$VENV/.installed" ]; then
  echo ">> Creating virtualenv $VENV (first time only; PyTorch makes this take a few minutes)"
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --upgrade pip
  "$VENV/bin/pip" install --quiet -r "$ROOT/requirements.txt"
  touch "$VENV/.installed"
fi
export PATH="$VENV/bin:$PATH"
export VIRTUAL_ENV="$VENV"
cd "$ROOT"
