#!/usr/bin/env bash
# Installs what lofi builds, runs and tests with; does nothing when all of it is present.
#  - Debian packages (scripts/packages.txt, each with its reason): the compiler, CMake, and the
#    libraries for JSON, TOML, CLI, images, regex, checksums, tests and the fuzzer.
#  - The project's Python environment (scripts/python-env.sh prints its path): PyTorch's wheel,
#    whose LibTorch, CUDA and NCCL libraries are lofi's engine, and the golden tests' references
#    (transformers, timm, tokenizers, safetensors, mergekit), pinned in scripts/requirements.lock. It lives in
#    a cache outside the checkout (LOFI_CACHE, default ~/.cache/lofi), keyed by the pins, so every
#    clone on a machine shares one copy of the ~5 GB of wheels.
# Nothing is downloaded at build or run time: everything here comes from Debian's archive and PyPI.
# `--relock` re-resolves the top-level pins below into scripts/requirements.lock.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

# The Debian packages: scripts/packages.txt, one a line (NAME ROLE # why); device-check.sh reads it too.
mapfile -t packages < <(sed -e 's/#.*//' "$here/packages.txt" | awk 'NF { print $1 }')
if [ ${#packages[@]} -eq 0 ]; then echo "install-deps: no packages read from $here/packages.txt" >&2; exit 1; fi

# Top-level pins; requirements.lock holds them with every dependency resolved.
top_level=(torch==2.11.0 torchvision==0.26.0 transformers timm tokenizers safetensors numpy pillow tensorboard mergekit==0.1.5)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -q
  $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if [ "${1:-}" = "--relock" ]; then
  tmp=$(mktemp -d)
  python3 -m venv "$tmp/venv"
  "$tmp/venv/bin/pip" install -q --dry-run --ignore-installed --report "$tmp/report.json" "${top_level[@]}"
  { sed -n '/^#/p' "$here/requirements.lock"
    "$tmp/venv/bin/python" -c 'import json,sys
for i in json.load(open(sys.argv[1]))["install"]: print(i["metadata"]["name"] + "==" + i["metadata"]["version"])' \
      "$tmp/report.json" | sort -f; } > "$tmp/lock"
  mv "$tmp/lock" "$here/requirements.lock"
  rm -rf "$tmp"
  echo "install-deps: wrote scripts/requirements.lock"
fi

# The environment is complete once its stamp exists; an interrupted install starts over.
venv="$(bash "$here/python-env.sh")"
if [ ! -f "$venv/.lofi-complete" ]; then
  echo "install-deps: creating the Python environment $venv (PyTorch and the test references, ~5 GB once per machine)"
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check --no-deps -r "$here/requirements.lock"
  touch "$venv/.lofi-complete"
fi
