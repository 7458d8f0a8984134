#!/usr/bin/env bash
# Prints the path of the project's Python environment: a cache folder keyed by the pins in
# scripts/requirements.lock (comments aside), so clones on one machine share it and a change of
# pins makes a new one. LOFI_PYTHON_ENV overrides it (e.g. a cluster's own PyTorch environment).
set -euo pipefail
if [ -n "${LOFI_PYTHON_ENV:-}" ]; then echo "$LOFI_PYTHON_ENV"; exit 0; fi
here="$(cd "$(dirname "$0")" && pwd)"
key=$(grep -v '^#' "$here/requirements.lock" | sha256sum | cut -c1-12)
echo "${LOFI_CACHE:-$HOME/.cache/lofi}/venv-$key"
