#!/usr/bin/env bash
# Installs the Debian packages lofi builds and runs with; does nothing when all are present.
# Everything comes from Debian's archive: nothing is downloaded at build or run time.
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config
  libtorch-dev            # LibTorch: tensors, autograd, nn, optim, c10d
  libgloo-dev             # Gloo, c10d's CPU collectives backend
  libopenblas0-openmp     # fast BLAS; the reference BLAS is ~17x slower on a transformer step
  libopenblas-openmp-dev
  nlohmann-json3-dev      # JSON: safetensors headers, config.json, metrics
  libtomlplusplus-dev     # TOML configs
  libcli11-dev            # CLI
  libxxhash-dev           # fast checksums of merge inputs (provenance)
  libpcre2-dev            # the tokenizer's pre-tokenisation regex (Unicode classes, lookahead, JIT)
  libpng-dev              # PNG decoding (report screenshots in tests; images)
  libturbojpeg0-dev       # JPEG decoding (TurboJPEG API: errors as return codes, no exit())
  libgtest-dev            # tests
  clang libclang-rt-14-dev  # libFuzzer, ASan, UBSan for fuzz/ (the fuzz test, make fuzz)
  chromium                # headless rendering of the HTML run report in tests
)
# `install-deps.sh --bench` adds what the benchmarks compare against.
if [ "${1:-}" = "--bench" ]; then
  packages+=(python3-torch python3-torchvision python3-pil python3-numpy)
fi
# `install-deps.sh --fixtures` adds what regenerates the image test fixtures (PIL, torchvision).
if [ "${1:-}" = "--fixtures" ]; then
  packages+=(python3-torch python3-torchvision python3-pil python3-numpy)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
