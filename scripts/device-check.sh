#!/usr/bin/env bash
# lofi on a GPU machine (one NVIDIA H200, PyTorch 2.11.0+cu130 in /opt/torch/.venv, 16 cores; no
# network, no apt, no pip), run from the repository root with $OUT a folder whose files come back.
#
# Modes:
#   scripts/device-check.sh --pack        on the BUILD machine, after a build: writes
#       .devrun/lofi-prebuilt.tar.xz (ignored; name .devrun in the device run's carry list): build/lofi
#       and build/tests/lofi_tests (stripped), every shared library they load that is neither
#       LibTorch's / CUDA's (the Python environment's) nor the base system's (libc, libstdc++, zlib),
#       found by ldd; Debian's fortune files (the demo's text); and devrun.env with BUILT_AT (this
#       checkout) and VENV_AT (scripts/python-env.sh), the absolute paths built into the test binary.
#       It then unpacks the pack into a temporary folder and starts its lofi as --prebuilt will.
#   scripts/device-check.sh --prebuilt    on the GPU machine: unpacks the pack into .devrun/unpacked/,
#       links BUILT_AT to it (beside links to this checkout's tests/, bench/, ...) and VENV_AT to the
#       machine's Python environment, and runs lofi with LD_LIBRARY_PATH = <torch>/lib:<the pack's
#       libraries>. `lofi --version` first (it stops there, saying why, if lofi does not start); then
#       CHECKS, a list of:
#         tests   the CUDA-labelled tests (lofi_tests --gtest_filter='Cuda*', in shards side by side)
#         llama   Llama-3.2-1B shape (16 layers, d 2048, 32 heads / 8 kv, ff 8192, vocab 128256, tied,
#                 rope_theta 500000)
#         opt     OPT-125M shape (12 layers, 12 heads, d 768, ff 3072, vocab 50272)
#                 each at seq 2048 x batch 8, bf16 autocast, fp32 master weights, fused AdamW, on one
#                 token file, by BENCH_IMPLS or those named (llama:lofi,hf-eager): lofi (lofi train;
#                 lofi-graphs: with train.cuda_graphs),
#                 torch-compile / torch-eager (the same model in plain PyTorch: bench/train_torch.py),
#                 hf-compile / hf-eager (transformers' own model: bench/train_hf.py); tokens/s, MFU,
#                 the CUDA caching allocator's peak, lofi / each
#         llama8b-lora  Llama-3-8B shape (32 layers, d 4096, 32 heads / 8 kv, ff 14336, vocab 128256),
#                 random weights, rank-16 LoRA on every linear layer over a bf16 base: lofi's [lora]
#                 against PEFT + transformers (hf-eager), tokens/s and peak memory
#         llama3b-bf16  Llama-3.2-3B shape (28 layers, d 3072, 24 heads / 8 kv, ff 8192, vocab 128256),
#                 random weights, a full fine-tune with train.param_dtype = "bf16" (fp32 masters)
#                 and every block checkpointed: lofi alone, its peak beside the memory plan's
#         demo    lofi demo --only language on the GPU (train.device "auto"): wall time, its table
#       By default what each open measurement needs first: the tests; Llama's lofi and torch.compile,
#       then lofi with CUDA graphs; the 8B LoRA shape, lofi and PEFT; OPT's lofi and torch.compile,
#       then lofi with CUDA graphs; the 3B bf16 full fine-tune; the demo; then the eager and
#       transformers rows, when time is left.
#       A check with less than half its budget left is not started and says SKIP. $OUT gets summary.txt (one table, printed last), device-check.log
#       (every command's output) and details.tar.gz: cuda-tests.log, bench.jsonl, lofi-*-metrics.jsonl,
#       lofi-*-profile.txt, demo-results.md (a device run brings back at most 8 files).
#       The exit status is 0 whatever the checks found: the table says PASS / FAIL / SKIP, and a
#       FAIL shows its log's last lines, never a number.
#   scripts/device-check.sh               the fallback: builds lofi on the GPU machine itself, then
#       a. the machine  b. a build against its own PyTorch, in build-gpu/  c. the CUDA-labelled tests
#       (and, last, the unit tests)  d. lo-fi (4 single-worker nodes sharing cuda:0) against the
#       1-node baseline, evaluated on the GPU; bf16 resume bit for bit; checkpoints moving between
#       CUDA and CPU  e. OPT-125M-shaped tokens/s and MFU: lofi against PyTorch eager and
#       torch.compile. Logs in $OUT/device-check.log and $OUT/logs/; $OUT/summary.txt one line per
#       check; exit 1 only when lofi does not build.
#   scripts/device-check.sh --fetch-debs  on the BUILD machine (Debian 12, apt): downloads the
#       packages scripts/packages.txt marks "lib" (what lofi compiles against), and the library
#       packages they depend on, into .device-debs/, for the fallback
#   scripts/device-check.sh --prefix-only unpacks .device-debs/ into .device-prefix/, checks that
#       pkg-config and CMake's search paths find them, builds nothing
# The fallback on a machine without the -dev headers: when .device-debs/ exists in the repository
# root, its packages are unpacked with `dpkg-deb -x` into .device-prefix/ (never into /) and CMake,
# the compiler, protoc and pkg-config are pointed at that prefix. .devrun/, .device-debs/,
# .device-prefix/ and build-gpu/ are ignored local artefacts: name the first two in the device run's
# carry list when they are needed there.
#
# Budgets (seconds; each is an environment variable). Every long command runs under `timeout`,
# capped by what is left of its step's budget and of the whole TOTAL_BUDGET_S (470; 455 for
# --prebuilt; 10 s kept for the summary), so the script ends within about TOTAL_BUDGET_S + 15 s
# whatever hangs.
#   --prebuilt: CUDA_TEST_S=90 (in CUDA_TEST_SHARDS=6 processes), LOFI_S=90 (one lofi train; LOFI_BIG_S=200
#     for the 8B and 3B shapes),
#     EAGER_S=75 and COMPILE_S=150 (one Python reference, compile warm-up included), DEMO_S=180,
#     TOTAL_BUDGET_S=455 (it ends within 8 minutes); CHECKS as above;
#     BENCH_IMPLS="lofi torch-compile torch-eager hf-eager hf-compile"; BENCH_SEQ=2048,
#     BENCH_BATCH=8, BENCH_STEPS=20, BENCH_WARMUP=10 (rates over steps 10-20; multiples of 5, lofi
#     logs every 5), BENCH_DEVICE=cuda, BENCH_PRECISION=bf16, PEAK_FLOPS=989e12 (H100 / H200 SXM dense bf16);
#     BENCH_PROFILE_STEPS=N profiles N of lofi's steps (train.profile_steps: before the measured
#     ones) and prints each shape's table under the summary (lofi-SHAPE-profile.txt);
#     BENCH_TINY=1 shrinks both shapes (with BENCH_DEVICE=cpu BENCH_PRECISION=fp32: a CPU smoke test).
#   fallback: BUILD_BUDGET_S=240 (configure at most 90 of it), CUDA_TEST_BUDGET_S=45,
#     RUNS_BUDGET_S=120, BENCH_BUDGET_S=130, UNIT_TEST_BUDGET_S=60 (what the build does not use goes
#     to the later steps); BENCH_SEQ=2048, BENCH_BATCH=8, BENCH_STEPS=30 (rates over steps 10-30).
#     The GPU-only checks (c, d, e) run before the unit tests, which are mostly CPU work the build
#     machine runs anyway.
# LOFI_DEVICE_PYTHON: the machine's Python with torch (default /opt/torch/.venv/bin/python).
set -u -o pipefail

cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD

# ---- the packages lofi builds with: scripts/packages.txt's "lib" lines (install-deps.sh reads it too) ---
mapfile -t DEV_PACKAGES < <(sed -e 's/#.*//' "$ROOT/scripts/packages.txt" | awk '$2 == "lib" { print $1 }')
# Needed beside them: zlib's headers (CMake's FindPNG requires ZLIB) and pkg-config itself, which a
# bare machine with CMake may not have.
EXTRA_PACKAGES=(zlib1g-dev pkgconf pkgconf-bin libpkgconf3)
# Direct dependencies never fetched: the C and C++ runtimes and zlib belong to the machine (a Debian 12
# copy of them ahead of its own would risk breaking its programs), googletest is gtest's sources.
SKIP_DEPS=" libc6 libc6-dev libgcc-s1 libstdc++6 zlib1g googletest "
# -dev dependencies are fetched only when lofi builds against them (libgloo-dev's libhiredis-dev and
# libibverbs-dev are not needed: lofi includes only Gloo's core headers).
DEV_DEPS_WANTED=" zlib1g-dev "

DEBS_DIR=$ROOT/.device-debs
PREFIX=$ROOT/.device-prefix
MULTIARCH=x86_64-linux-gnu

fetch_debs() {
  command -v apt-get > /dev/null || { echo "--fetch-debs needs apt-get (run it on the Debian 12 build machine)" >&2; exit 1; }
  local p deps d wanted=() skipped=()
  for p in "${DEV_PACKAGES[@]}" "${EXTRA_PACKAGES[@]}"; do wanted+=("$p"); done
  for p in "${DEV_PACKAGES[@]}"; do
    # "  Depends: libfoo1" and " |Depends: libbar" (alternatives); "<virtual>" names are not packages.
    deps=$(apt-cache depends --no-recommends --no-suggests --no-conflicts --no-breaks --no-replaces \
             --no-enhances "$p" | sed -E 's/^ *\|/ /' | awk '$1 == "Depends:" && $2 !~ /^</ { print $2 }') ||
      { echo "apt-cache depends $p failed (run apt-get update?)" >&2; exit 1; }
    for d in $deps; do
      if [[ $SKIP_DEPS == *" $d "* ]] || { [[ $d == *-dev ]] && [[ $DEV_DEPS_WANTED != *" $d "* ]]; }; then
        skipped+=("$p -> $d")
      elif [[ " ${wanted[*]} " != *" $d "* ]]; then
        wanted+=("$d")
      fi
    done
  done
  echo "fetch-debs: not fetched (the machine's own, or not built against): ${skipped[*]:-none}"
  echo "fetch-debs: downloading ${#wanted[@]} packages into $DEBS_DIR: ${wanted[*]}"
  mkdir -p "$DEBS_DIR"
  rm -f "$DEBS_DIR"/*.deb
  (cd "$DEBS_DIR" && apt-get download "${wanted[@]}") ||
    { echo "apt-get download failed (stale package lists? sudo apt-get update)" >&2; exit 1; }
  (cd "$DEBS_DIR" && for f in *.deb; do dpkg-deb -f "$f" Package Version | paste -sd' '; done) > "$DEBS_DIR/MANIFEST"
  echo "fetch-debs: $(find "$DEBS_DIR" -name '*.deb' | wc -l) packages, $(du -sh "$DEBS_DIR" | cut -f1) in $DEBS_DIR (MANIFEST lists them)"
  echo "fetch-debs: carry .device-debs to the GPU machine (it is untracked; add it to .gitignore and the run's carry list)"
}

# ---- the prefix of unpacked .debs -------------------------------------------------------------------
CMAKE_EXTRA=()
RUN_ENV=(env)   # what lofi and the tests run under: LD_LIBRARY_PATH with the prefix's libraries

unpack_deb() {  # unpack_deb FILE DEST: dpkg-deb where it exists, else ar + tar (binutils has ar)
  if command -v dpkg-deb > /dev/null; then dpkg-deb -x "$1" "$2"; return; fi
  local member z=()
  member=$(ar t "$1" | grep '^data\.tar') || return 1
  case $member in *.xz) z=(-J) ;; *.zst) z=(--zstd) ;; *.gz) z=(-z) ;; *.bz2) z=(-j) ;; esac
  ar p "$1" "$member" | tar -x "${z[@]}" -C "$2"
}

setup_prefix() {
  if [ ! -d "$DEBS_DIR" ]; then
    say "  no .device-debs/: building with the machine's own headers and libraries"
    return 0
  fi
  local debs=("$DEBS_DIR"/*.deb) stamp deb link target base soname d lib
  [ -e "${debs[0]}" ] || { say "  .device-debs/ holds no .deb files"; return 1; }
  # Unpack once per set of packages (names carry versions): a re-run on a warm machine keeps the
  # headers' timestamps, so ninja does not rebuild.
  stamp=$(printf '%s\n' "${debs[@]##*/}" | sort | sha256sum | cut -c1-16)
  if [ "$(cat "$PREFIX/.stamp" 2>/dev/null)" != "$stamp" ]; then
    rm -rf "$PREFIX"
    mkdir -p "$PREFIX"
    for deb in "${debs[@]}"; do
      unpack_deb "$deb" "$PREFIX" || { say "  cannot unpack $deb"; return 1; }
    done
    # .pc files name /usr: point them at the prefix (regular files only; symlinked .pc files
    # follow their targets).
    find "$PREFIX" -type f -name '*.pc' -print0 |
      xargs -0 -r sed -i -E "s#^([A-Za-z_]+)=/usr(/|\$)#\\1=$PREFIX/usr\\2#"
    # Development symlinks whose library package was left to the machine (libz.so -> libz.so.1.2.13)
    # dangle: point them at the machine's library of the same soname. Absolute links go into the prefix.
    while IFS= read -r -d '' link; do
      target=$(readlink "$link")
      if [[ $target == /* ]] && [ -e "$PREFIX$target" ]; then ln -sfn "$PREFIX$target" "$link"; continue; fi
      base=${target##*/}
      soname=$(sed -E 's/(\.so\.[0-9]+).*/\1/' <<< "$base")
      for d in /lib/$MULTIARCH /usr/lib/$MULTIARCH /lib64 /usr/lib64 /usr/lib; do
        if [ -e "$d/$soname" ]; then ln -sfn "$d/$soname" "$link"; say "  relinked ${link#"$PREFIX"} -> $d/$soname"; break; fi
      done
    done < <(find "$PREFIX" -xtype l -print0)
    echo "$stamp" > "$PREFIX/.stamp"
    say "  unpacked ${#debs[@]} packages into $PREFIX"
  else
    say "  reusing $PREFIX (same packages)"
  fi
  lib=$PREFIX/usr/lib/$MULTIARCH
  # The compiler: CPATH for headers found without CMake (png.h, zlib.h), LIBRARY_PATH for -l lookups.
  export CPATH="$PREFIX/usr/include${CPATH:+:$CPATH}"
  export CMAKE_INCLUDE_PATH="$PREFIX/usr/include${CMAKE_INCLUDE_PATH:+:$CMAKE_INCLUDE_PATH}"
  export LIBRARY_PATH="$lib${LIBRARY_PATH:+:$LIBRARY_PATH}"
  export PKG_CONFIG_PATH="$lib/pkgconfig:$PREFIX/usr/share/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
  # LD_LIBRARY_PATH only for lofi, ctest and what they start, not for this script's own grep, sed and
  # git, which would otherwise load Debian 12's pcre2 and friends ahead of the machine's. (The build
  # tree's RUNPATH names the prefix too; this is the belt to those braces.)
  RUN_ENV=(env "LD_LIBRARY_PATH=$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}")
  # CMAKE_LIBRARY_PATH: pkgconf leaves out -L for LIBRARY_PATH's directories, so CMake's
  # pkg_check_modules looks the libraries up itself, also where it does not know the multiarch name.
  CMAKE_EXTRA+=("-DCMAKE_PREFIX_PATH=$PREFIX/usr" "-DCMAKE_LIBRARY_PATH=$lib")
  # Config packages under lib/<multiarch>/cmake are found through CMAKE_PREFIX_PATH only where
  # CMake knows the multiarch name; name them outright.
  [ -d "$lib/cmake/GTest" ] && CMAKE_EXTRA+=("-DGTest_DIR=$lib/cmake/GTest")
  [ -d "$PREFIX/usr/share/cmake/nlohmann_json" ] && CMAKE_EXTRA+=("-Dnlohmann_json_DIR=$PREFIX/usr/share/cmake/nlohmann_json")
  [ -d "$PREFIX/usr/share/cmake/CLI11" ] && CMAKE_EXTRA+=("-DCLI11_DIR=$PREFIX/usr/share/cmake/CLI11")
  # pkg-config: the machine's if it has one, else the prefix's pkgconf behind a wrapper that finds
  # its libpkgconf. Named outright either way: CMake would otherwise find the prefix's usr/bin/pkg-config
  # first (through CMAKE_PREFIX_PATH), which cannot load its library without LD_LIBRARY_PATH.
  if command -v pkg-config > /dev/null; then
    CMAKE_EXTRA+=("-DPKG_CONFIG_EXECUTABLE=$(command -v pkg-config)")
  elif [ -x "$PREFIX/usr/bin/pkgconf" ]; then
    printf '#!/bin/sh\nLD_LIBRARY_PATH=%s exec %s "$@"\n' "$lib" "$PREFIX/usr/bin/pkgconf" > "$PREFIX/pkg-config"
    chmod +x "$PREFIX/pkg-config"
    export PATH="$PATH:$PREFIX"
    CMAKE_EXTRA+=("-DPKG_CONFIG_EXECUTABLE=$PREFIX/pkg-config")
    say "  pkg-config: the prefix's pkgconf"
  fi
  # protoc: the prefix's when it has one (its generated code must match the prefix's protobuf headers),
  # behind a wrapper that finds its libprotoc; the build runs it, so it needs no LD_LIBRARY_PATH.
  if [ -x "$PREFIX/usr/bin/protoc" ]; then
    printf '#!/bin/sh\nLD_LIBRARY_PATH=%s exec %s "$@"\n' "$lib" "$PREFIX/usr/bin/protoc" > "$PREFIX/protoc"
    chmod +x "$PREFIX/protoc"
    CMAKE_EXTRA+=("-DLOFI_PROTOC=$PREFIX/protoc")
    say "  protoc: the prefix's ($("$PREFIX/protoc" --version 2>&1))"
  fi
  local m out
  for m in tomlplusplus libxxhash libturbojpeg libpcre2-8 libpng icu-uc protobuf-lite libisal; do
    out=$(pkg-config --cflags --libs "$m" 2>&1) || { say "  pkg-config $m: $out"; continue; }
    say "  pkg-config $m: $out"
  done
  return 0
}

# ---- logging, budgets and results -------------------------------------------------------------------
say() { echo "$*" | tee -a "$LOG"; }
section() { say ""; say "==== $* ($(( SECONDS - T0 )) s elapsed, $(( TOTAL_BUDGET_S - (SECONDS - T0) )) s left)"; }
result() {  # result PASS|FAIL|SKIP NAME DETAILS...
  local status=$1 name=$2; shift 2
  printf '%-4s  %-22s %s\n' "$status" "$name" "$*" | tee -a "$SUMMARY" "$LOG"
}
begin_step() { STEP_END=$(( SECONDS + $1 )); }
cap() {  # cap WANT: WANT seconds, or less where the step's or the whole budget ends sooner (10 s kept for the summary)
  local want=$1 step_left=$(( STEP_END - SECONDS )) total_left=$(( TOTAL_BUDGET_S - (SECONDS - T0) - 10 ))
  (( step_left < want )) && want=$step_left
  (( total_left < want )) && want=$total_left
  echo "$want"
}
# bounded NAME SECONDS CMD...: runs CMD under timeout (capped as above), its output in
# $OUT/logs/NAME.log and in the main log; on failure the last lines are shown. Returns CMD's status,
# 124/137 on timeout, 125 when no time was left to start it.
bounded() {
  local name=$1 limit start rc
  limit=$(cap "$2"); shift 2
  if (( limit < 3 )); then
    say "  [$name] not started: the time budget is spent"
    echo "not started: the time budget is spent" > "$LOGS/$name.log"
    return 125
  fi
  say "  [$name] \$ $* (limit ${limit} s)"
  start=$SECONDS
  timeout -k 5 "$limit" "$@" > "$LOGS/$name.log" 2>&1
  rc=$?
  { echo "---- [$name] rc $rc after $(( SECONDS - start )) s"; cat "$LOGS/$name.log"; echo "---- [$name] end"; } >> "$LOG"
  if (( rc == 124 || rc == 137 )); then
    say "  [$name] TIMEOUT after ${limit} s"
  elif (( rc != 0 )); then
    say "  [$name] exit status $rc; last lines:"
    tail -n 25 "$LOGS/$name.log" | sed 's/^/    /' | tee -a "$LOG"
  fi
  return $rc
}
why() {  # why RC: a word for a failed command's status
  case $1 in 124|137) echo "timeout" ;; 125) echo "no time left" ;; *) echo "exit $1" ;; esac
}
verdict() {  # verdict RC: FAIL, or SKIP when the command was never started for want of time
  if (( $1 == 125 )); then echo SKIP; else echo FAIL; fi
}
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

# Small Python helpers (the machine's Python; torch only where needed).
py() { "$PY" -c "$@"; }
# Last metrics record of each node of a run: "NODES LAST_STEP MEAN_LOSS MEAN_VAL_LOSS BYTES_BETWEEN BYTES_WITHIN"
RUN_STATS='
import glob, json, sys
recs = []
for f in sorted(glob.glob(sys.argv[1] + "/node-*/metrics.jsonl")):
    lines = [json.loads(l) for l in open(f) if l.strip()]
    if lines: recs.append(lines[-1])
if not recs: print("0 0 nan nan 0 0"); sys.exit()
val = [r["val_loss"] for r in recs if "val_loss" in r]
mean = lambda xs: sum(xs) / len(xs) if xs else float("nan")
print(len(recs), min(r["step"] for r in recs), "%.4f" % mean([r["loss"] for r in recs]), "%.4f" % mean(val),
      sum(r["bytes_between_nodes"] for r in recs), sum(r["bytes_within_node"] for r in recs))
'
# Bit-for-bit comparison of two safetensors files: exit 0 when every tensor's bytes are equal.
COMPARE='
import sys, torch
from safetensors.torch import load_file
a, b = load_file(sys.argv[1]), load_file(sys.argv[2])
if a.keys() != b.keys():
    print("different tensor names"); sys.exit(2)
same = all(x.dtype == b[k].dtype and x.shape == b[k].shape and
           torch.equal(x.contiguous().view(torch.uint8), b[k].contiguous().view(torch.uint8)) for k, x in a.items())
diff = max((x.double() - b[k].double()).abs().max().item() for k, x in a.items())
print(("identical" if same else "differ"), "max_abs_diff=%.3g" % diff, "tensors=%d" % len(a))
sys.exit(0 if same else 1)
'
# Eval JSON -> the first result row's loss on dataset "val".
EVAL_LOSS='
import json, sys
r = json.load(open(sys.argv[1]))["results"][0]["datasets"]["val"]
print("%.4f %.3f" % (r["loss"], r["perplexity"]))
'

# ---- a. the machine ---------------------------------------------------------------------------------
HAVE_GPU=0
step_machine() {
  section "a. machine"
  { timeout 20 nvidia-smi; timeout 10 nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv; } 2>&1 | tee -a "$LOG"
  say "nproc: $(nproc); memory: $(free -g 2>/dev/null | awk '/^Mem:/ { print $2 " GiB" }'); disk free here: $(df -h . | awk 'NR == 2 { print $4 }')"
  # shellcheck disable=SC1091
  say "os: $(. /etc/os-release 2>/dev/null && echo "${PRETTY_NAME:-?}"); $(g++ --version 2>/dev/null | head -1 || echo 'no g++')"
  say "cmake: $(cmake --version 2>/dev/null | head -1); ninja: $(ninja --version 2>/dev/null || echo none); nvcc: $(nvcc --version 2>/dev/null | tail -1 || echo 'not on PATH')"
  say "ccache: $(command -v ccache || echo none); pkg-config: $(command -v pkg-config || echo none); dpkg-deb: $(command -v dpkg-deb || echo none)"
  local info
  info=$(timeout 60 "$PY" -c '
import sys, torch
ok = torch.cuda.is_available()
print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda,
      "available", ok, "gpus", torch.cuda.device_count(), "|", torch.cuda.get_device_name(0) if ok else "-")
for m in ("numpy", "safetensors", "transformers", "timm", "tokenizers"):
    try: print(" ", m, __import__(m).__version__)
    except Exception as e: print(" ", m, "MISSING", e)
' 2>&1)
  say "$info"
  if grep -q "available True" <<< "$info"; then
    HAVE_GPU=1
    result PASS machine "$(head -1 <<< "$info"), $(nproc) cores"
  else
    result FAIL machine "torch sees no GPU: $(head -1 <<< "$info")"
  fi
}

# ---- b. build -------------------------------------------------------------------------------------
LOFI=()
step_build() {
  section "b. build ($BUILD, budget ${BUILD_BUDGET_S} s)"
  begin_step "$BUILD_BUDGET_S"
  setup_prefix || { result FAIL build "could not unpack .device-debs/ into .device-prefix/"; return 1; }
  [ "$MODE" = prefix-only ] && return 0
  if ! command -v nvcc > /dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then export PATH="$PATH:/usr/local/cuda/bin"; fi
  local rc t
  t=$(now)
  bounded configure 90 cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DLOFI_PYTHON="$PY" -DLOFI_TEST_PYTHON="$PY" "${CMAKE_EXTRA[@]}"
  rc=$?
  if (( rc != 0 )); then result FAIL build "configure: $(why $rc) (logs/configure.log)"; return 1; fi
  local engine
  engine=$(grep -o 'lofi: LibTorch.*' "$LOGS/configure.log" | head -1)
  say "  $engine"
  bounded build "$BUILD_BUDGET_S" cmake --build "$BUILD" -j "${BUILD_JOBS:-16}"
  rc=$?
  if (( rc != 0 )) || [ ! -x "$BUILD/lofi" ]; then
    result FAIL build "cmake --build: $(why $rc) after $(elapsed "$t" "$(now)") s (logs/build.log)"
    return 1
  fi
  LOFI=("${RUN_ENV[@]}" "$ROOT/$BUILD/lofi")
  local version
  version=$(timeout 30 "${LOFI[@]}" --version 2>&1 | paste -sd';')
  say "  $version"
  result PASS build "$(elapsed "$t" "$(now)") s; ${engine#lofi: }"
  if grep -q "available yes" <<< "$version"; then
    result PASS lofi-version "$version"
  else
    result FAIL lofi-version "lofi does not see a GPU: $version"
  fi
}

# ---- c. tests ---------------------------------------------------------------------------------------
ctest_label() {  # ctest_label NAME LABEL BUDGET CTEST_ARGS...
  local name=$1 label=$2 budget=$3 rc line failed total skipped; shift 3
  begin_step "$budget"
  bounded "$name" "$budget" "${RUN_ENV[@]}" ctest --test-dir "$BUILD" -L "$label" --output-on-failure --timeout 60 "$@"
  rc=$?
  if grep -q "No tests were found" "$LOGS/$name.log"; then
    result SKIP "$name" "no tests labelled $label"
    return
  fi
  line=$(grep -Eo '[0-9]+ tests failed out of [0-9]+' "$LOGS/$name.log" | tail -1)
  failed=$(awk '{ print $1 }' <<< "$line"); total=$(awk '{ print $NF }' <<< "$line")
  skipped=$(grep -c '(Skipped)' "$LOGS/$name.log")
  if [ -z "$line" ]; then
    result FAIL "$name" "ctest -L $label: $(why $rc), no result line (logs/$name.log)"
  elif (( rc == 0 && failed == 0 )); then
    result PASS "$name" "$(( total - skipped )) of $total passed, $skipped skipped"
  else
    result FAIL "$name" "$failed of $total failed, $skipped skipped ($(why $rc); logs/$name.log)"
  fi
}

# ---- d. lo-fi against the baseline, evaluation, resume, device moves -------------------------------
DATA='' RUNS=''
make_lm_data() {  # train/val shards of a learnable stream: a repeating 31-token pattern with 10% noise, vocab 256
  py '
import sys, numpy as np
def shard(path, n, seed):
    pattern = np.random.default_rng(1234).integers(0, 256, 31)
    rng = np.random.default_rng(seed)
    ids = np.tile(pattern, n // 31 + 1)[:n]
    noise = rng.random(n) < 0.1
    ids[noise] = rng.integers(0, 256, int(noise.sum()))
    header = np.zeros(256, np.int32); header[:3] = (20240520, 1, n)  # llm.c: magic, version 1 = uint16, count
    with open(path, "wb") as f:
        f.write(header.tobytes()); f.write(ids.astype(np.uint16).tobytes())
shard(sys.argv[1] + "/train.bin", 2_000_000, 1)
shard(sys.argv[1] + "/val.bin", 200_000, 2)
' "$DATA"
}

keep_run_files() {  # the small files of a run directory come back under $OUT/runs (weights stay behind)
  local run=$1 f
  (cd "$RUNS" && find "$run" \( -name metrics.jsonl -o -name config.toml \) -print0 2>/dev/null) |
    while IFS= read -r -d '' f; do mkdir -p "$OUT/runs/$(dirname "$f")"; cp "$RUNS/$f" "$OUT/runs/$f"; done
}

step_runs() {
  section "d. lo-fi vs baseline, eval, bf16 resume, device moves (budget ${RUNS_BUDGET_S} s)"
  begin_step "$RUNS_BUDGET_S"
  DATA=$WORK/data RUNS=$WORK/runs
  mkdir -p "$DATA" "$RUNS"
  if ! make_lm_data >> "$LOG" 2>&1; then result FAIL lm-data "could not write the token shards"; return; fi
  # examples/lm-tiny.toml's model and schedule (4 layers, d 128, seq 64, global batch 32, eval every 50,
  # checkpoint every 50), from a random init (its model.init is the demo's, absent here) on our data.
  local tiny=(--config examples/lm-tiny.toml --set model.init= --set "data.train=$DATA/train.bin"
              --set "data.val=$DATA/val.bin" --quiet)
  local rc t wall_lofi wall_base n step loss val between

  # Lo-fi: 4 single-worker nodes, all on GPU 0 (cuda:0), batch 32 / 4 each, averaged at the end.
  t=$(now)
  bounded run-lofi 45 "${LOFI[@]}" launch --workers 4 -- train "${tiny[@]}" --set train.device=cuda:0 \
    --set dist.nodes=4 --set train.steps=100 --set "run.dir=$RUNS/lofi"
  rc=$?
  wall_lofi=$(elapsed "$t" "$(now)")
  read -r n step loss val between _ <<< "$(py "$RUN_STATS" "$RUNS/lofi")"
  if (( rc == 0 )) && [ "$n" = 4 ] && [ "$step" = 100 ] && [ -f "$RUNS/lofi/merged.safetensors" ] && [ "$between" = 0 ]; then
    result PASS run-lofi "4 nodes on cuda:0, 100 steps in $wall_lofi s wall, final train loss (node mean) $loss, val $val, bytes between nodes 0"
  else
    result "$(verdict $rc)" run-lofi "$(why $rc), $n nodes at step $step, loss $loss, bytes between nodes $between, merged: $([ -f "$RUNS/lofi/merged.safetensors" ] && echo yes || echo no)"
  fi
  keep_run_files lofi

  # Baseline: one node, one worker on the GPU, the same global batch of 32.
  t=$(now)
  bounded run-baseline 35 "${LOFI[@]}" train "${tiny[@]}" --set train.device=cuda --set dist.nodes=1 \
    --set train.steps=100 --set "run.dir=$RUNS/baseline"
  rc=$?
  wall_base=$(elapsed "$t" "$(now)")
  read -r n step loss val between _ <<< "$(py "$RUN_STATS" "$RUNS/baseline")"
  if (( rc == 0 )) && [ "$step" = 100 ] && [ -f "$RUNS/baseline/node-00/final.safetensors" ]; then
    result PASS run-baseline "1 node on cuda, 100 steps in $wall_base s wall, final train loss $loss, val $val ($(grep -o 'final loss [0-9.]*' "$LOGS/run-baseline.log" | tail -1))"
  else
    result "$(verdict $rc)" run-baseline "$(why $rc), step $step, loss $loss"
  fi
  keep_run_files baseline

  # Both evaluated on the GPU on the same held-out windows.
  local which model el_lofi="" el_base=""
  for which in lofi baseline; do
    model=$RUNS/lofi/merged.safetensors
    [ "$which" = baseline ] && model=$RUNS/baseline/node-00/final.safetensors
    if [ ! -f "$model" ]; then result SKIP "eval-$which" "no $model"; continue; fi
    bounded "eval-$which" 25 "${LOFI[@]}" eval --model "$model" --data "val=$DATA/val.bin" --set train.device=cuda \
      --max-windows 512 --json "$OUT/eval-$which.json"
    rc=$?
    if (( rc == 0 )) && read -r loss val <<< "$(py "$EVAL_LOSS" "$OUT/eval-$which.json" 2>> "$LOG")" && [ -n "$loss" ]; then
      # Better than uniform over 256 ids (ln 256 = 5.545): the model learned on the GPU.
      if awk -v l="$loss" 'BEGIN { exit !(l < 5.545) }'; then
        result PASS "eval-$which" "on cuda: val loss $loss, ppl $val (512 windows of 64)"
      else
        result FAIL "eval-$which" "on cuda: val loss $loss (no better than uniform, 5.545)"
      fi
      if [ "$which" = lofi ]; then el_lofi=$loss; else el_base=$loss; fi
    else
      result "$(verdict $rc)" "eval-$which" "$(why $rc) (logs/eval-$which.log)"
    fi
  done
  [ -n "$el_lofi" ] && [ -n "$el_base" ] &&
    say "  lo-fi merged vs baseline: val loss $el_lofi vs $el_base; wall $wall_lofi s vs $wall_base s"

  # bf16 and --resume: an uninterrupted 40-step run, and a second run whose newest checkpoint is
  # step 20 (its step-40 state deleted, as after a crash) resumed to 40; the finals must be equal bit
  # for bit. The two runs' step-20 checkpoints tell run-to-run determinism apart from resume.
  local bf=(--set train.device=cuda --set train.precision=bf16 --set train.steps=40 --set train.ckpt_every=20
            --set train.log_every=5 --set train.eval_every=0)
  bounded bf16-full 25 "${LOFI[@]}" train "${tiny[@]}" "${bf[@]}" --set "run.dir=$RUNS/bf16-full" &&
    bounded bf16-part 25 "${LOFI[@]}" train "${tiny[@]}" "${bf[@]}" --set "run.dir=$RUNS/bf16-part"
  rc=$?
  if (( rc == 0 )); then
    rm -f "$RUNS/bf16-part/node-00/final.safetensors" "$RUNS/bf16-part/node-00/ckpt/step-000040."*
    bounded bf16-resume 25 "${LOFI[@]}" train "${tiny[@]}" "${bf[@]}" --set "run.dir=$RUNS/bf16-part" --resume
    rc=$?
  fi
  if (( rc != 0 )); then
    result "$(verdict $rc)" bf16-resume "a run failed: $(why $rc) (logs/bf16-*.log)"
  elif grep -q 'step 5/40' "$LOGS/bf16-resume.log" || ! grep -q 'step 25/40' "$LOGS/bf16-resume.log"; then
    result FAIL bf16-resume "the resumed run did not continue from step 20 (logs/bf16-resume.log)"
  else
    local at20 at40
    at20=$(py "$COMPARE" "$RUNS/bf16-full/node-00/ckpt/step-000020.safetensors" "$RUNS/bf16-part/node-00/ckpt/step-000020.safetensors" 2>&1 | tail -1)
    at40=$(py "$COMPARE" "$RUNS/bf16-full/node-00/final.safetensors" "$RUNS/bf16-part/node-00/final.safetensors" 2>&1 | tail -1)
    if [[ $at40 == identical* ]]; then
      result PASS bf16-resume "resumed final equals uninterrupted bit for bit ($at40); step 20: $at20"
    else
      result FAIL bf16-resume "final after resume: $at40; step-20 checkpoints of the two runs: $at20"
    fi
  fi
  keep_run_files bf16-full; keep_run_files bf16-part

  # A checkpoint moves between devices: 20 steps (checkpoint every 10) on one device; a copy without
  # its step-20 state resumes from step 10 on the other and finishes. Distance to the uninterrupted
  # final is shown for information (CPU and CUDA kernels differ).
  local mv=(--set train.steps=20 --set train.ckpt_every=10 --set train.log_every=5 --set train.eval_every=0)
  local from to
  for from in cuda cpu; do
    to=$([ "$from" = cuda ] && echo cpu || echo cuda)
    bounded "move-$from-train" 25 "${LOFI[@]}" train "${tiny[@]}" "${mv[@]}" --set "train.device=$from" \
      --set "run.dir=$RUNS/move-$from"
    rc=$?
    if (( rc != 0 )); then result "$(verdict $rc)" "move-$from-to-$to" "training on $from: $(why $rc)"; continue; fi
    rm -rf "$RUNS/move-$from-to-$to"
    cp -a "$RUNS/move-$from" "$RUNS/move-$from-to-$to"
    rm -f "$RUNS/move-$from-to-$to/node-00/final.safetensors" "$RUNS/move-$from-to-$to/node-00/ckpt/step-000020."*
    bounded "move-$from-to-$to" 25 "${LOFI[@]}" train "${tiny[@]}" "${mv[@]}" --set "train.device=$to" \
      --set "run.dir=$RUNS/move-$from-to-$to" --resume
    rc=$?
    read -r n step loss _ _ _ <<< "$(py "$RUN_STATS" "$RUNS/move-$from-to-$to")"
    if (( rc == 0 )) && [ "$step" = 20 ] && [ -f "$RUNS/move-$from-to-$to/node-00/final.safetensors" ] &&
       ! grep -q 'step 5/20' "$LOGS/move-$from-to-$to.log"; then
      local d
      d=$(py "$COMPARE" "$RUNS/move-$from/node-00/final.safetensors" "$RUNS/move-$from-to-$to/node-00/final.safetensors" 2>&1 | tail -1)
      result PASS "move-$from-to-$to" "step-10 checkpoint from $from resumed on $to to step 20, loss $loss; vs all on $from: $d"
    else
      result "$(verdict $rc)" "move-$from-to-$to" "resume on $to: $(why $rc), step $step (logs/move-$from-to-$to.log)"
    fi
    keep_run_files "move-$from-to-$to"
  done
}

# ---- e. benchmark: OPT-125M shape, bf16 -------------------------------------------------------------
PEAK_FLOPS=989e12   # H200 (as H100 SXM) dense bf16 tensor-core peak, FLOP/s
MEM_PID=
gpu_mem_sampler_start() {  # samples used GPU memory (MiB) every 250 ms into FILE, in the background (MEM_PID)
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 250 > "$1" 2> /dev/null &
  MEM_PID=$!
}
gpu_mem_sampler_stop() {  # gpu_mem_sampler_stop FILE: stops the sampler, prints the peak in MiB
  if [ -n "$MEM_PID" ]; then kill "$MEM_PID" 2> /dev/null; wait "$MEM_PID" 2> /dev/null; fi
  MEM_PID=
  sort -n "$1" 2> /dev/null | tail -1
}
mfu_of() { awk -v n="$N_PARAMS" -v t="$1" -v p="$PEAK_FLOPS" 'BEGIN { printf "%.1f", 100 * 6 * n * t / p }'; }
ratio_of() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

step_bench() {
  section "e. benchmark: OPT-125M shape, bf16 (budget ${BENCH_BUDGET_S} s)"
  begin_step "$BENCH_BUDGET_S"
  local L=12 H=12 D=768 FF=3072 V=50272 MAXT=2048 T=$BENCH_SEQ B=$BENCH_BATCH S=$BENCH_STEPS W=10
  # N: parameters without the position embedding, the tied head counted once.
  N_PARAMS=$(awk -v L=$L -v D=$D -v F=$FF -v V=$V 'BEGIN { printf "%.0f", V*D + L*(4*(D*D+D) + (D*F+F) + (F*D+D) + 4*D) + 2*D }')
  local tok=$WORK/bench-tokens-$V.bin rc mem lofi_tps="" eager_tps="" compile_tps="" lofi_mem="" eager_mem="" compile_mem=""
  # 4M random ids below 50272: uint16 fits, so llm.c version 1 (bench/make_tokens.py).
  if ! timeout 60 "$PY" bench/make_tokens.py "$tok" 4000000 "$V" >> "$LOG" 2>&1; then
    result FAIL bench "could not write $tok"; return
  fi
  # (i) lofi. log_every 5: the rate is taken between the records of step W and the last (bench/metrics_rate.py).
  gpu_mem_sampler_start "$WORK/mem-lofi.txt"
  bounded bench-lofi 50 "${LOFI[@]}" train --set model.n_layer=$L --set model.n_head=$H --set model.d_model=$D \
    --set model.d_ff=$FF --set model.vocab_size=$V --set model.max_seq_len=$MAXT --set "data.seq_len=$T" \
    --set "train.batch_size=$B" --set "train.steps=$S" --set train.log_every=5 --set train.warmup_steps=5 \
    --set train.device=cuda --set train.precision=bf16 --set "data.train=$tok" --set "run.dir=$WORK/bench-lofi" --quiet
  local lofi_rc=$?
  lofi_mem=$(gpu_mem_sampler_stop "$WORK/mem-lofi.txt")
  if (( lofi_rc == 0 )); then lofi_tps=$("$PY" bench/metrics_rate.py "$WORK/bench-lofi" "$W" 2>> "$LOG"); fi
  mkdir -p "$OUT/runs/bench-lofi/node-00"
  cp "$WORK/bench-lofi/node-00/metrics.jsonl" "$OUT/runs/bench-lofi/node-00/" 2> /dev/null
  # (ii) eager and (iii) torch.compile: the same model, batch, sequence length and token file.
  local mode args
  for mode in eager compile; do
    args=$(printf '{"n_layer":%d,"n_head":%d,"d_model":%d,"d_ff":%d,"vocab_size":%d,"max_seq_len":%d,"seq_len":%d,"batch":%d,"steps":%d,"warmup":%d,"compile":%s,"device":"cuda","precision":"bf16","data":"%s"}' \
      $L $H $D $FF $V $MAXT "$T" "$B" "$S" $W "$([ $mode = compile ] && echo true || echo false)" "$tok")
    gpu_mem_sampler_start "$WORK/mem-$mode.txt"
    bounded "bench-torch-$mode" "$([ $mode = compile ] && echo 90 || echo 45)" "$PY" bench/train_torch.py "$args"
    rc=$?
    mem=$(gpu_mem_sampler_stop "$WORK/mem-$mode.txt")
    if (( rc == 0 )); then
      grep '^{' "$LOGS/bench-torch-$mode.log" | tail -1 > "$OUT/bench-torch-$mode.json"
      local tps
      tps=$(py 'import json,sys; print(json.load(open(sys.argv[1]))["tokens_per_s"])' "$OUT/bench-torch-$mode.json" 2>> "$LOG")
      if [ $mode = eager ]; then eager_tps=$tps eager_mem=$mem; else compile_tps=$tps compile_mem=$mem; fi
    else
      result "$(verdict $rc)" "bench-torch-$mode" "$(why $rc) (logs/bench-torch-$mode.log)"
    fi
  done
  # The table, the MFU and the aims. N: parameters without the position embedding (the tied head
  # counted once); MFU = 6 N tokens/s / peak (no attention FLOPs).
  py '
import sys
L, D, FF, V, T, B, peak = (float(x) for x in sys.argv[1:8])
rows = dict(zip(("lofi", "eager", "compile"), sys.argv[8:11]))
mems = dict(zip(("lofi", "eager", "compile"), sys.argv[11:14]))
N = V * D + L * (4 * (D * D + D) + (D * FF + FF) + (FF * D + D) + 4 * D) + 2 * D
tps = {k: float(v) for k, v in rows.items() if v}
mfu = {k: 6 * N * v / peak for k, v in tps.items()}
print("OPT-125M shape: %d layers, d %d, d_ff %d, vocab %d; seq %d x batch %d; bf16" % (L, D, FF, V, T, B))
print("N = %.2fM parameters without position embeddings; MFU = 6 N tokens/s / %.0f TFLOP/s (H100 / H200 SXM dense bf16)" % (N / 1e6, peak / 1e12))
print("%-22s %12s %7s %9s %12s" % ("", "tokens/s", "MFU", "GPU mem", "lofi / this"))
for k, label in (("lofi", "lofi train"), ("eager", "PyTorch eager"), ("compile", "torch.compile")):
    if k not in tps:
        print("%-22s %12s" % (label, "failed"))
        continue
    ratio = "%.2fx" % (tps["lofi"] / tps[k]) if "lofi" in tps else "-"
    mem = "%.1f GiB" % (int(mems[k]) / 1024) if mems[k].isdigit() else "-"
    print("%-22s %12.0f %6.1f%% %9s %12s" % (label, tps[k], 100 * mfu[k], mem, ratio))
' "$L" "$D" "$FF" "$V" "$T" "$B" "$PEAK_FLOPS" "$lofi_tps" "$eager_tps" "$compile_tps" "$lofi_mem" "$eager_mem" "$compile_mem" \
    2>&1 | tee "$OUT/bench.txt" | tee -a "$LOG"
  local mfu
  local shape="seq $T x batch $B, bf16, MFU vs ${PEAK_FLOPS/e12/} TFLOP/s, N=$N_PARAMS (no positions)"
  if [ -n "$lofi_tps" ]; then
    mfu=$(mfu_of "$lofi_tps")
    result PASS bench-lofi "$(printf '%.0f' "$lofi_tps") tokens/s, MFU $mfu% ($shape), peak GPU mem ${lofi_mem:-?} MiB"
    if awk -v m="$mfu" 'BEGIN { exit !(m >= 40) }'; then result PASS bench-aim-mfu "lofi MFU $mfu% >= 40%"
    else result FAIL bench-aim-mfu "lofi MFU $mfu% < 40%"; fi
  else
    result "$(verdict $lofi_rc)" bench-lofi "no tokens/s: $(why $lofi_rc) (logs/bench-lofi.log)"
    result SKIP bench-aim-mfu "no lofi measurement"
  fi
  local mode_tps
  for mode in eager compile; do
    mode_tps=$eager_tps; [ $mode = compile ] && mode_tps=$compile_tps
    [ -z "$mode_tps" ] && continue
    mem=$eager_mem; [ $mode = compile ] && mem=$compile_mem
    result PASS "bench-torch-$mode" "$(printf '%.0f' "$mode_tps") tokens/s, MFU $(mfu_of "$mode_tps")%, peak GPU mem ${mem:-?} MiB$([ -n "$lofi_tps" ] && echo ", lofi / $mode $(ratio_of "$lofi_tps" "$mode_tps")x")"
  done
  if [ -n "$lofi_tps" ] && [ -n "$eager_tps" ]; then
    local r
    r=$(ratio_of "$lofi_tps" "$eager_tps")
    if awk -v r="$r" 'BEGIN { exit !(r >= 1.0) }'; then result PASS bench-aim-vs-eager "lofi / eager ${r}x >= 1.0x"
    else result FAIL bench-aim-vs-eager "lofi / eager ${r}x < 1.0x"; fi
  else
    result SKIP bench-aim-vs-eager "lofi or eager not measured"
  fi
}

# ---- --pack (build machine): the binaries and the libraries they need, for a GPU machine ------------
DEVRUN=$ROOT/.devrun
PACK=$DEVRUN/lofi-prebuilt.tar.xz
UNPACKED=$DEVRUN/unpacked
# Not packed: what every machine that runs PyTorch has (the C and C++ runtimes, zlib), and whatever
# lives in the Python environment (LibTorch, CUDA, NCCL): the GPU machine's own torch 2.11.0 has it.
BASE_LIB_RE='^(linux-vdso|ld-linux-x86-64|libc|libm|libdl|libpthread|librt|libresolv|libutil|libstdc\+\+|libgcc_s|libz)\.so'
FORTUNES_DIR=/usr/share/games/fortunes

# shared_libs VENV BINARY...: "SONAME PATH" for each library the binaries load (ldd: all of them,
# transitively) that is neither the base system's nor the Python environment's; "MISSING SONAME" for
# one ldd cannot find.
shared_libs() {
  local venv=$1 real name arrow path rest
  shift
  real=$(realpath -m "$venv")
  ldd "$@" | while read -r name arrow path rest; do
    [ "$arrow" = "=>" ] || continue
    if [ "$path" = not ]; then echo "MISSING $name"; continue; fi
    [[ $path == /* ]] || continue
    case $path in "$venv"/* | "$real"/* | */site-packages/*) continue ;; esac
    [[ $name =~ $BASE_LIB_RE ]] && continue
    echo "$name $path"
  done | sort -u
}

torch_lib_of() { "$1" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))'; }

pack() {
  local bin=$ROOT/build/lofi tests=$ROOT/build/tests/lofi_tests venv libs stage name path f dirty travel
  for f in "$bin" "$tests"; do
    [ -x "$f" ] || { echo "pack: $f is missing: build first (make, or cmake --build build)" >&2; return 1; }
  done
  venv=$(bash "$ROOT/scripts/python-env.sh")
  [ -x "$venv/bin/python" ] || { echo "pack: no Python environment at $venv (scripts/install-deps.sh makes it)" >&2; return 1; }
  libs=$(shared_libs "$venv" "$bin" "$tests")
  if grep -q '^MISSING' <<< "$libs"; then
    echo "pack: ldd cannot find $(awk '$1 == "MISSING" { print $2 }' <<< "$libs" | paste -sd' ')" >&2
    return 1
  fi
  stage=$(mktemp -d "${TMPDIR:-/tmp}/lofi-pack.XXXXXX")
  mkdir -p "$stage/tree/build/tests" "$stage/lib" "$stage/fortunes"
  if ! strip --strip-unneeded -o "$stage/tree/build/lofi" "$bin" ||
     ! strip --strip-unneeded -o "$stage/tree/build/tests/lofi_tests" "$tests"; then
    echo "pack: strip failed" >&2; rm -rf "$stage"; return 1
  fi
  while read -r name path; do cp -L "$path" "$stage/lib/$name"; done <<< "$libs"
  # The demo's text (Debian's fortunes), for a GPU machine without the package: the category files.
  if [ -d "$FORTUNES_DIR" ]; then
    find "$FORTUNES_DIR" -mindepth 1 -maxdepth 1 ! -name '*.*' \( -type f -o -type l \) -exec cp -L {} "$stage/fortunes/" \;
  else
    echo "pack: no $FORTUNES_DIR (Debian's fortunes): the demo will need the GPU machine's own" >&2
  fi
  dirty=$(git -C "$ROOT" status --porcelain --untracked-files=no 2> /dev/null | wc -l)
  # The test binary has this checkout's and this Python environment's absolute paths built in
  # (fixtures, its Python, the lofi binary): --prebuilt recreates them as links.
  {
    echo "BUILT_AT=$ROOT"
    echo "VENV_AT=$venv"
    echo "COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2> /dev/null)$( ((dirty)) && echo " with $dirty changed tracked files")"
    echo "PACKED=$(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "LOFI_BUILT=$(date -u -r "$bin" '+%Y-%m-%d %H:%M:%S UTC')"
    echo "TORCH=$("$venv/bin/python" -c 'import torch; print(torch.__version__)' 2> /dev/null)"
    echo "LIBS=$(cut -d' ' -f1 <<< "$libs" | paste -sd' ')"
  } > "$stage/devrun.env"
  # .devrun travels whole: only the pack goes in it (a local --prebuilt's unpacked copy and output go).
  rm -rf "$UNPACKED" "$DEVRUN/out"
  mkdir -p "$DEVRUN"
  if ! tar -C "$stage" -cf - . | xz -T0 -6 > "$PACK.part"; then
    echo "pack: tar | xz failed" >&2; rm -rf "$stage" "$PACK.part"; return 1
  fi
  mv "$PACK.part" "$PACK"
  rm -rf "$stage"
  echo "pack: $PACK, $(du -h "$PACK" | cut -f1): lofi and lofi_tests (stripped), $(wc -l <<< "$libs") libraries, $(find "$FORTUNES_DIR" -mindepth 1 -maxdepth 1 ! -name '*.*' 2> /dev/null | wc -l) fortune files"
  echo "pack:   ${libs//$'\n'/$'\n'pack:   }"
  # What a device run carries: tracked and untracked-but-not-ignored files, and the carried .devrun.
  travel=$(cd "$ROOT" && git ls-files -z --cached --others --exclude-standard | xargs -0 -r stat -c %s -- 2> /dev/null |
           awk -v p="$(du -sb "$DEVRUN" | cut -f1)" '{ s += $1 } END { printf "%.1f", (s + p) / 1048576 }')
  echo "pack: the working tree and .devrun come to $travel MiB (a device run carries at most 64)"
  awk -v t="$travel" 'BEGIN { exit !(t > 60) }' && echo "pack: WARNING: that is close to or over the 64 MiB a device run carries" >&2
  pack_selfcheck "$venv"
}

# pack_selfcheck VENV: unpacks the pack into a temporary folder and starts its lofi the way
# --prebuilt does (LD_LIBRARY_PATH = torch's lib, then the pack's): every library must come from one
# of those two or the base system, and `lofi --version` must run.
pack_selfcheck() {
  local venv=$1 torch_lib tmp stray v rc
  torch_lib=$(torch_lib_of "$venv/bin/python") || { echo "pack: cannot import torch from $venv" >&2; return 1; }
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/lofi-pack-check.XXXXXX")
  tar -xJf "$PACK" -C "$tmp" || { echo "pack: cannot unpack $PACK" >&2; rm -rf "$tmp"; return 1; }
  stray=$(env LD_LIBRARY_PATH="$torch_lib:$tmp/lib" ldd "$tmp/tree/build/lofi" "$tmp/tree/build/tests/lofi_tests" |
          BASE="$BASE_LIB_RE" awk -v pk="$tmp/lib/" '$2 == "=>" && index($3, pk) != 1 && $3 !~ /site-packages/ && $1 !~ ENVIRON["BASE"] { print $1 " => " $3 }' | sort -u)
  v=$(env LD_LIBRARY_PATH="$torch_lib:$tmp/lib" timeout 120 "$tmp/tree/build/lofi" --version 2>&1)
  rc=$?
  local listed
  listed=$(env LD_LIBRARY_PATH="$torch_lib:$tmp/lib" timeout 120 "$tmp/tree/build/tests/lofi_tests" --gtest_filter='Cuda*' \
             --gtest_list_tests 2>&1) || { rc=1; v+=$'\n'"lofi_tests --gtest_list_tests failed: $listed"; }
  rm -rf "$tmp"
  if [ -n "$stray" ]; then
    echo "pack: self-check FAILED: these would not come from torch, the pack or the base system:" >&2
    echo "pack:   ${stray//$'\n'/$'\n'pack:   }" >&2
    return 1
  fi
  if (( rc != 0 )); then
    echo "pack: self-check FAILED: the unpacked lofi --version exits $rc: $v" >&2
    return 1
  fi
  echo "pack: self-check: the unpacked lofi starts with torch's lib and the pack's: $(paste -sd';' <<< "$v")"
  echo "pack: self-check: the unpacked lofi_tests lists $(grep -c '^  ' <<< "$listed") CUDA tests"
}

# ---- --prebuilt (GPU machine): the pack's binaries, tested and measured -----------------------------
ROWS='' SHAPES='' TAILS='' PROFILES='' LOFI_LD='' CREATED_LINKS=()
row() {  # row NAME STATUS SHAPE TOKENS_PER_S PEAK_BYTES PEAK_SOURCE NOTE: one line of the summary table
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" "$6" "$7" >> "$ROWS"
  say "  => $2 $1${4:+ $4 tokens/s}${5:+ peak $5 B ($6)} $7"
}
check_row() { row "$1" "$2" - "" "" "" "$3"; }
# tail_of NAME: the last lines of a failed command's log go to the summary.
tail_of() {
  { echo "[$1] last lines of its log:"; tail -n "${2:-6}" "$LOGS/$1.log" 2> /dev/null | cut -c1-200 | sed 's/^/    /'; } >> "$TAILS"
}
info_value() { sed -n "s/^$1=//p" "$UNPACKED/devrun.env"; }

prebuilt_machine() {
  section "a. machine"
  local gpu tv
  gpu=$(timeout 20 nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | head -1)
  tv=$(timeout 60 "$PY" -c 'import torch, transformers
print("torch", torch.__version__, "CUDA", torch.version.cuda, "GPU visible", torch.cuda.is_available(), "transformers", transformers.__version__)' 2>&1 | tail -1)
  MACHINE="$gpu; $tv; $(nproc) cores"
  say "  $MACHINE"
  if [[ $tv == *"GPU visible True"* ]]; then check_row machine PASS "$MACHINE"
  else check_row machine FAIL "torch sees no GPU: $MACHINE"; fi
}

# Unpacks .devrun/lofi-prebuilt.tar.xz into .devrun/unpacked/ and recreates the build machine's paths:
# BUILT_AT -> .devrun/unpacked/tree (build/lofi, build/tests/lofi_tests, and links to this checkout's
# tests/, bench/, ...), VENV_AT -> this machine's Python environment.
prebuilt_unpack() {
  section "unpack $PACK"
  if [ ! -f "$PACK" ]; then
    check_row lofi-start FAIL "no $PACK: run scripts/device-check.sh --pack on the build machine and carry .devrun"
    return 1
  fi
  rm -rf "$UNPACKED"
  mkdir -p "$UNPACKED"
  if ! timeout 120 tar -xJf "$PACK" -C "$UNPACKED" >> "$LOG" 2>&1; then
    check_row lofi-start FAIL "cannot unpack $PACK (device-check.log)"
    return 1
  fi
  local f name py_venv
  for f in "$ROOT"/* "$ROOT"/.[!.]*; do
    name=${f##*/}
    case $name in build | .devrun | .git | "*" | ".[!.]*") continue ;; esac
    [ -e "$UNPACKED/tree/$name" ] || ln -s "$f" "$UNPACKED/tree/$name"
  done
  BUILT_AT=$(info_value BUILT_AT) VENV_AT=$(info_value VENV_AT)
  say "  packed $(info_value PACKED) from $(info_value COMMIT) (lofi built $(info_value LOFI_BUILT), torch $(info_value TORCH))"
  say "  libraries: $(info_value LIBS)"
  if [ -z "$BUILT_AT" ] || [ -z "$VENV_AT" ]; then
    check_row lofi-start FAIL "the pack's devrun.env lacks BUILT_AT or VENV_AT"
    return 1
  fi
  if [ "$(realpath -m "$BUILT_AT")" = "$ROOT" ]; then
    # The checkout sits where it was built (build/ does not travel): the tests find lofi at
    # build/lofi, so the pack's binaries are linked there.
    local bin
    for bin in lofi tests/lofi_tests; do
      if [ ! -e "$ROOT/build/$bin" ] || [ -L "$ROOT/build/$bin" ]; then
        mkdir -p "$(dirname "$ROOT/build/$bin")" && ln -sfn "$UNPACKED/tree/build/$bin" "$ROOT/build/$bin" &&
          CREATED_LINKS+=("$ROOT/build/$bin")
      fi
    done
    say "  BUILT_AT $BUILT_AT is this checkout: build/lofi and build/tests/lofi_tests link to the pack's"
  elif [ -L "$BUILT_AT" ] || [ ! -e "$BUILT_AT" ]; then
    mkdir -p "$(dirname "$BUILT_AT")" && ln -sfn "$UNPACKED/tree" "$BUILT_AT" && CREATED_LINKS+=("$BUILT_AT")
    say "  $BUILT_AT -> $UNPACKED/tree"
  else
    say "  $BUILT_AT exists here and is not a link: the test binary will use what is there"
  fi
  py_venv=$(dirname "$(dirname "$PY")")
  if [ -x "$VENV_AT/bin/python" ]; then
    say "  $VENV_AT/bin/python exists"
  elif [ -L "$VENV_AT" ] || [ ! -e "$VENV_AT" ]; then
    mkdir -p "$(dirname "$VENV_AT")" && ln -sfn "$py_venv" "$VENV_AT" && CREATED_LINKS+=("$VENV_AT")
    say "  $VENV_AT -> $py_venv"
  fi
  TORCH_LIB=$(torch_lib_of "$PY" 2>> "$LOG") || { check_row lofi-start FAIL "$PY cannot import torch"; return 1; }
  LOFI_LD="$TORCH_LIB:$UNPACKED/lib"
  # lofi's own CUDA kernels link the CUDA runtime (libcudart.so.13): the one torch loads, from the
  # wheel's nvidia/ packages, not whatever toolkit the machine may have.
  local cudart
  cudart=$(find "$(dirname "$TORCH_LIB")/../nvidia" -name 'libcudart.so.*' -print -quit 2> /dev/null)
  [ -n "$cudart" ] && LOFI_LD="$LOFI_LD:$(dirname "$cudart")"
  # Only lofi and the tests run under it, not this script's grep, sed and Python (a Debian 12 pcre2
  # ahead of the machine's own could break them).
  LOFI=(env "LD_LIBRARY_PATH=$LOFI_LD" "$UNPACKED/tree/build/lofi")
  # The demo's text: the machine's fortunes, else the pack's.
  if [ ! -f "$FORTUNES_DIR/computers" ] && [ -f "$UNPACKED/fortunes/computers" ]; then
    export LOFI_FORTUNES=$UNPACKED/fortunes
    say "  LOFI_FORTUNES=$LOFI_FORTUNES (this machine has no $FORTUNES_DIR)"
  fi
  say "  LD_LIBRARY_PATH for lofi: $LOFI_LD"
}

prebuilt_version() {
  local v rc missing
  v=$(timeout 120 "${LOFI[@]}" --version 2>&1)
  rc=$?
  say "  lofi --version (exit $rc): $(paste -sd';' <<< "$v")"
  if (( rc != 0 )); then
    missing=$(env LD_LIBRARY_PATH="$LOFI_LD" ldd "$UNPACKED/tree/build/lofi" 2>&1 | grep 'not found' | awk '{ print $1 }' | paste -sd' ')
    check_row lofi-start FAIL "the prebuilt lofi does not start here (exit $rc${missing:+; not found: $missing}): $(tail -2 <<< "$v" | paste -sd' ' | cut -c1-300)"
    return 1
  fi
  if grep -q 'available yes' <<< "$v"; then check_row lofi-version PASS "$(paste -sd';' <<< "$v")"
  else check_row lofi-version FAIL "lofi starts but sees no GPU: $(paste -sd';' <<< "$v")"; fi
}

# b. the CUDA-labelled tests (Cuda*), as ctest runs them (working directory build/tests, no
# environment of their own), in CUDA_TEST_SHARDS gtest shards side by side, as `ctest -j` would:
# they are small beside the GPU.
prebuilt_tests() {
  section "b. CUDA tests (budget ${CUDA_TEST_S} s)"
  begin_step "$CUDA_TEST_S"
  local limit i rc=0 r pids=() passed failed skipped wd names bin=$BUILT_AT/build/tests/lofi_tests
  [ -x "$bin" ] || bin=$UNPACKED/tree/build/tests/lofi_tests
  wd=$(dirname "$bin")
  limit=$(cap "$CUDA_TEST_S")
  if (( limit < 3 )); then check_row cuda-tests SKIP "no time left"; return; fi
  say "  \$ $bin --gtest_filter='Cuda*' in $CUDA_TEST_SHARDS shards (limit $limit s), in $wd"
  for (( i = 0; i < CUDA_TEST_SHARDS; i++ )); do
    (cd "$wd" && GTEST_TOTAL_SHARDS=$CUDA_TEST_SHARDS GTEST_SHARD_INDEX=$i timeout -k 5 "$limit" \
       env LD_LIBRARY_PATH="$LOFI_LD" "$bin" --gtest_filter='Cuda*' > "$LOGS/cuda-tests-$i.log" 2>&1) &
    pids+=($!)
  done
  for (( i = 0; i < CUDA_TEST_SHARDS; i++ )); do
    wait "${pids[$i]}"; r=$?
    (( r != 0 )) && rc=$r
  done
  for (( i = 0; i < CUDA_TEST_SHARDS; i++ )); do echo "---- shard $i"; cat "$LOGS/cuda-tests-$i.log"; done > "$LOGS/cuda-tests.log"
  cp "$LOGS/cuda-tests.log" "$OUT/cuda-tests.log"
  cat "$LOGS/cuda-tests.log" >> "$LOG"
  passed=$(grep -Eho '^\[  PASSED  \] [0-9]+' "$LOGS/cuda-tests.log" | awk '{ s += $NF } END { print s + 0 }')
  failed=$(grep -Eho '^\[  FAILED  \] [0-9]+ tests?, listed below' "$LOGS/cuda-tests.log" | awk '{ s += $4 } END { print s + 0 }')
  skipped=$(grep -Eho '^\[  SKIPPED \] [0-9]+ tests?, listed below' "$LOGS/cuda-tests.log" | awk '{ s += $4 } END { print s + 0 }')
  local counts="$passed passed, $failed failed, $skipped skipped"
  if (( rc == 0 && failed == 0 && skipped == 0 && passed > 0 )); then
    names=$(grep -Eo '^\[       OK \] Cuda[^ ]+ \([0-9]+ ms\)' "$LOGS/cuda-tests.log" | sed 's/^\[       OK \] //' | paste -sd' ')
    check_row cuda-tests PASS "$counts: $names"
  else
    local why=""
    (( rc == 124 || rc == 137 )) && why="timeout after $limit s; "
    (( skipped > 0 )) && why+="skipped: lofi sees no GPU; "
    names=$(grep -Eho '^\[  FAILED  \] Cuda[^ ]+' "$LOGS/cuda-tests.log" | sed 's/^\[  FAILED  \] //' | sort -u | paste -sd' ')
    check_row cuda-tests FAIL "${why}exit $rc; $counts${names:+: $names} (cuda-tests.log)"
    { echo "[cuda-tests] failures:"; grep -E 'Failure|error:|Expected|Which is|Value of|TIMEOUT' "$LOGS/cuda-tests.log" | head -12 | cut -c1-200 | sed 's/^/    /'; } >> "$TAILS"
  fi
}

# c. the benchmark shapes. N: parameters that do a matmul per token (the tied head counted once,
# OPT's position embedding left out); attention: 12 L d T per token (PaLM's count, the full T x T).
shape_of() {  # shape_of opt|llama|llama8b-lora|llama3b-bf16: sets SL SH SKV SD SFF SV STHETA SLABEL SARCH SLORA SBF16 SB
  SKV='' STHETA='' SARCH=$1 SLORA='' SBF16='' SB=$BENCH_BATCH
  if [ "$1" = llama ]; then SL=16 SH=32 SKV=8 SD=2048 SFF=8192 SV=128256 STHETA=500000 SLABEL="Llama-3.2-1B shape"
  elif [ "$1" = llama8b-lora ]; then
    # Llama-3-8B's shape (random weights), rank-16 adapters on every linear layer, the base frozen in
    # bf16: lofi's [lora] against PEFT + transformers (bench/train_hf.py lora_rank). MFU counts 6 N
    # FLOPs a token as for the others, though a frozen base skips the weight gradients (about 4 N).
    SL=32 SH=32 SKV=8 SD=4096 SFF=14336 SV=128256 STHETA=500000 SARCH=llama SLORA=16
    SLABEL="Llama-3-8B shape, LoRA r=16 all-linear, bf16 base"
    # lofi's plan puts batch 8 x 2048 at about 103 GB: on a GPU of less than 120 GiB (an H100) both
    # sides run half the batch.
    local mib
    mib=$(nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits 2> /dev/null | head -1)
    if [[ $mib =~ ^[0-9]+$ ]] && (( mib < 120 * 1024 && BENCH_BATCH > 1 )); then
      SB=$(( BENCH_BATCH / 2 )) SLABEL="$SLABEL, batch $SB (a GPU of $(( mib / 1024 )) GiB)"
    fi
  elif [ "$1" = llama3b-bf16 ]; then
    # Llama-3.2-3B's shape, a full fine-tune with bf16 weights and gradients, fp32 masters and
    # AdamW state (train.param_dtype = "bf16"), every block checkpointed: what one GPU holds of a
    # 3B full fine-tune, measured beside the memory plan's peak.
    SL=28 SH=24 SKV=8 SD=3072 SFF=8192 SV=128256 STHETA=500000 SARCH=llama SBF16=1
    SLABEL="Llama-3.2-3B shape, full fine-tune, bf16 weights + fp32 masters, checkpointed"
  else SL=12 SH=12 SD=768 SFF=3072 SV=50272 SLABEL="OPT-125M shape"; fi
  if [ -n "${BENCH_TINY:-}" ]; then SL=2 SH=4 SD=64 SFF=128 SV=512 SLABEL="$SLABEL (tiny: BENCH_TINY)"; [ -n "$SKV" ] && SKV=2; fi
}
n_params() {  # n_params opt|llama|llama8b-lora|llama3b-bf16 (after shape_of)
  if [ "$SARCH" = llama ]; then
    awk -v L="$SL" -v D="$SD" -v H="$SH" -v K="$SKV" -v F="$SFF" -v V="$SV" \
      'BEGIN { kv = D / H * K; printf "%.0f", V*D + L*(2*D*D + 2*D*kv + 3*D*F + 2*D) + D }'
  else
    awk -v L="$SL" -v D="$SD" -v F="$SFF" -v V="$SV" 'BEGIN { printf "%.0f", V*D + L*(4*(D*D+D) + (D*F+F) + (F*D+D) + 4*D) + 2*D }'
  fi
}
write_tokens() {  # write_tokens FILE VOCAB: 4M random ids (bench/make_tokens.py for uint16; uint32, llm.c version 2, above)
  if (( $2 <= 65536 )); then timeout 60 "$PY" bench/make_tokens.py "$1" 4000000 "$2"; return; fi
  timeout 60 "$PY" - "$1" "$2" << 'PYEOF'
import sys, numpy as np
h = np.zeros(256, np.int32); h[:3] = (20240520, 2, 4000000)
with open(sys.argv[1], "wb") as f:
    f.write(h.tobytes()); f.write(np.random.default_rng(0).integers(0, int(sys.argv[2]), 4000000, dtype=np.uint32).tobytes())
PYEOF
}

# init_dir_for SHAPE (after shape_of): a Hugging Face directory of random bf16 weights of the shape,
# made once by transformers on $BENCH_DEVICE, its path on stdout. lofi's own random init draws on
# the host, one number at a time (PyTorch's CPU normal_ is serial): minutes for the 8B shape, where
# a fine-tune starts from a pretrained directory anyway, as this one.
init_dir_for() {
  local dir=$WORK/init-$1
  if [ ! -f "$dir/config.json" ]; then
    timeout "$(cap 240)" "$PY" - "$dir" "$SL" "$SH" "$SKV" "$SD" "$SFF" "$SV" "$STHETA" "$BENCH_SEQ" "$BENCH_DEVICE" >> "$LOG" 2>&1 << 'PYEOF' || return 1
import sys, torch, transformers
out, L, H, KV, D, FF, V, theta, T, dev = sys.argv[1:]
cfg = transformers.LlamaConfig(vocab_size=int(V), hidden_size=int(D), intermediate_size=int(FF), num_hidden_layers=int(L),
                               num_attention_heads=int(H), num_key_value_heads=int(KV), max_position_embeddings=int(T),
                               rope_theta=float(theta), tie_word_embeddings=True)
torch.set_default_dtype(torch.bfloat16)
with torch.device(dev):
    model = transformers.LlamaForCausalLM(cfg)
model.save_pretrained(out)
print(f"init: {sum(p.numel() for p in model.parameters())} bf16 weights written to {out}")
PYEOF
  fi
  echo "$dir"
}

# time_for NAME BUDGET: true when at least half of BUDGET is left; else NAME's row says SKIP (a run
# started with less would most likely time out and say FAIL for want of time, not of lofi).
time_for() {
  local left
  left=$(cap "$2")
  if (( left * 2 < $2 )); then
    row "$1" SKIP "${3:--}" "" "" "" "not started: $left s left of the budget, it needs up to $2 s"
    return 1
  fi
}

bench_shape() {  # bench_shape opt|llama IMPL...
  local shape=$1 tok rc n n_ref line tps peak src smi flags=() impl script compile limit args json plan_peak plan_flags f
  shape_of "$shape"
  section "c. benchmark: $SLABEL, seq $BENCH_SEQ x batch $SB, $BENCH_PRECISION on $BENCH_DEVICE"
  n=$(n_params "$shape")
  grep -q "^$shape"$'\t' "$SHAPES" ||
    printf '%s\t%s\t%s\t%s\n' "$shape" "$n" "$(( 12 * SL * SD * BENCH_SEQ ))" "$SLABEL" >> "$SHAPES"
  tok=$WORK/tokens-$SV.bin
  if [ ! -f "$tok" ] && ! write_tokens "$tok" "$SV" >> "$LOG" 2>&1; then
    row "$shape lofi" FAIL "$shape" "" "" "" "could not write the token file $tok"; return
  fi
  flags=(--set "model.n_layer=$SL" --set "model.n_head=$SH" --set "model.d_model=$SD" --set "model.d_ff=$SFF"
         --set "model.vocab_size=$SV" --set "model.max_seq_len=$BENCH_SEQ" --set "data.seq_len=$BENCH_SEQ"
         --set "train.batch_size=$SB" --set "train.steps=$BENCH_STEPS" --set train.log_every=5
         --set train.warmup_steps=5 --set "train.device=$BENCH_DEVICE" --set "train.precision=$BENCH_PRECISION"
         --set "data.train=$tok" --set train.ckpt_every=0 --set "run.dir=$WORK/$shape-lofi" --quiet)
  # Profiled steps (3 after a 3-step warm-up) end before the measured ones begin.
  (( ${BENCH_PROFILE_STEPS:-0} > 0 )) && flags+=(--set "train.profile_steps=$BENCH_PROFILE_STEPS")
  # Llama's MLP is SwiGLU (silu), as bench/train_torch.py's and transformers' are; lofi's
  # model.activation default (relu) is OPT's.
  [ "$SARCH" = llama ] && flags+=(--set model.arch=llama --set "model.n_kv_head=$SKV" --set "model.rope_theta=$STHETA"
                                  --set model.tie_word_embeddings=true --set model.activation=silu)
  [ -n "$SLORA" ] && flags+=(--set "lora.rank=$SLORA" --set "lora.alpha=$(( 2 * SLORA ))" --set lora.target=all-linear
                             --set model.dtype=bf16)
  [ -n "$SBF16" ] && flags+=(--set train.param_dtype=bf16 --set train.activation_checkpointing=1)
  shift
  for impl in "$@"; do
    if [ "$impl" = lofi ] || [ "$impl" = lofi-graphs ]; then
      # lofi-graphs: the same run with train.cuda_graphs (the step replayed from CUDA graphs).
      local run=$WORK/$shape-$impl extra=()
      [ "$impl" = lofi-graphs ] && extra=(--set train.cuda_graphs=true --set "run.dir=$run")
      # The 8B and 3B shapes load billions of weights first (init_dir_for), and the 3B run ends by
      # writing its checkpoint (fp32 weights and AdamW state, about 50 GB): LOFI_BIG_S.
      local lofi_s=$LOFI_S
      [ -n "$SLORA$SBF16" ] && lofi_s=$LOFI_BIG_S
      begin_step "$lofi_s"
      time_for "$shape $impl" "$lofi_s" "$shape" || continue
      local init=() init_dir=''
      if [ -n "$SLORA$SBF16" ]; then  # billions of weights: from a pretrained-style directory
        if ! init_dir=$(init_dir_for "$shape"); then
          row "$shape $impl" FAIL "$shape" "" "" "" "could not write random initial weights with transformers (device-check.log)"; continue
        fi
        init=(--set "model.init=$init_dir")
      fi
      gpu_mem_sampler_start "$WORK/mem-$shape-$impl.txt"
      bounded "$shape-$impl" "$lofi_s" "${LOFI[@]}" train "${flags[@]}" "${extra[@]}" "${init[@]}"
      rc=$?
      smi=$(gpu_mem_sampler_stop "$WORK/mem-$shape-$impl.txt")
      if (( rc == 0 )) && json=$("$PY" bench/metrics_rate.py "$run" "$BENCH_WARMUP" --json 2>> "$LOG"); then
        read -r tps peak <<< "$(py 'import json, sys; d = json.loads(sys.argv[1]); print(d["rate"], d["peak_memory_bytes"] or "")' "$json")"
        src=allocator
        if [ -z "$peak" ] && [ -n "$smi" ]; then peak=$(( smi * 1048576 )) src=nvidia-smi; fi
        [ -z "$peak" ] && src="no peak: metrics.jsonl has no peak_memory_bytes and nvidia-smi sampled nothing"
        cp "$run/node-00/metrics.jsonl" "$OUT/$impl-$shape-metrics.jsonl" 2> /dev/null
        if [ -f "$run/node-00/profile/table.txt" ]; then
          cp "$run/node-00/profile/table.txt" "$OUT/$impl-$shape-profile.txt"
          { echo "[$shape $impl] $(head -c 3000 "$OUT/$impl-$shape-profile.txt")"; } >> "$PROFILES"
        fi
        echo "{\"shape\": \"$shape\", \"impl\": \"$impl\", \"lofi_rate\": $json, \"nvidia_smi_peak_mib\": ${smi:-null}}" >> "$OUT/bench.jsonl"
        # The memory plan's peak for the same run (lofi plan), beside the measured one.
        plan_flags=()
        for f in "${flags[@]}" "${extra[@]}" "${init[@]}"; do [ "$f" = --quiet ] || plan_flags+=("$f"); done
        plan_peak=$("${LOFI[@]}" plan "${plan_flags[@]}" 2>> "$LOG" | awk '$1 == "peak" { print $2 " " $3 }')
        row "$shape $impl" PASS "$shape" "$tps" "$peak" "$src" "lofi train$([ "$impl" = lofi-graphs ] && echo " with train.cuda_graphs"), rate over steps $BENCH_WARMUP-$BENCH_STEPS, memory plan's peak ${plan_peak:-?}$([ -z "$peak" ] && echo "; $src")"
      else
        row "$shape $impl" "$(verdict $rc)" "$shape" "" "" "" "$(why $rc)"; tail_of "$shape-$impl"
      fi
      # The machine's disk is small: the random weights (16 GB for the 8B shape) and the run's
      # final checkpoint (fp32 weights and AdamW state) go once measured.
      [ -n "$init_dir" ] && rm -rf "$init_dir" "$run/node-00/ckpt"
      continue
    fi
    case $impl in
      torch-*) script=bench/train_torch.py ;;
      hf-*) script=bench/train_hf.py ;;
      *) say "  unknown BENCH_IMPLS entry $impl"; continue ;;
    esac
    compile=false limit=$EAGER_S
    if [[ $impl == *-compile ]]; then compile=true limit=$COMPILE_S; fi
    args=$(printf '{"arch":"%s","n_layer":%d,"n_head":%d,"d_model":%d,"d_ff":%d,"vocab_size":%d,"max_seq_len":%d,"seq_len":%d,"batch":%d,"steps":%d,"warmup":%d,"compile":%s,"device":"%s","precision":"%s","data":"%s"%s}' \
      "$SARCH" "$SL" "$SH" "$SD" "$SFF" "$SV" "$BENCH_SEQ" "$BENCH_SEQ" "$SB" "$BENCH_STEPS" "$BENCH_WARMUP" \
      "$compile" "$BENCH_DEVICE" "$BENCH_PRECISION" "$tok" \
      "$([ "$SARCH" = llama ] && echo ",\"n_kv_head\":$SKV,\"rope_theta\":$STHETA,\"tie_word_embeddings\":true")$([ -n "$SLORA" ] && echo ",\"lora_rank\":$SLORA,\"lora_alpha\":$(( 2 * SLORA )),\"base_dtype\":\"bf16\"")")
    begin_step "$limit"
    time_for "$shape $impl" "$limit" "$shape" || continue
    bounded "$shape-$impl" "$limit" env HF_HUB_OFFLINE=1 "$PY" "$script" "$args"
    rc=$?
    line=$(grep '^{' "$LOGS/$shape-$impl.log" | tail -1)
    if (( rc == 0 )) && [ -n "$line" ]; then
      read -r tps peak n_ref src <<< "$(py 'import json, sys; d = json.loads(sys.argv[1])
print(d["tokens_per_s"], d["peak_mem_bytes"], d["params_no_pos"], "allocator" if d["peak_mem_kind"].startswith("torch.cuda") else "rss")' "$line")"
      echo "{\"shape\": \"$shape\", \"impl\": \"$impl\", \"result\": $line}" >> "$OUT/bench.jsonl"
      local note
      note="$script compile=$compile, warm-up $(py 'import json, sys; print(json.loads(sys.argv[1])["warmup_s"])' "$line") s"
      [ "$n_ref" != "$n" ] && note+="; its N $n_ref differs from the table's $n"
      row "$shape $impl" PASS "$shape" "$tps" "$peak" "$src" "$note"
    else
      row "$shape $impl" "$(verdict $rc)" "$shape" "" "" "" "$(why $rc)"; tail_of "$shape-$impl"
    fi
  done
}

# d. the demo's language half on the GPU (train.device = "auto").
prebuilt_demo() {
  section "d. lofi demo --only language (budget ${DEMO_S} s)"
  begin_step "$DEMO_S"
  time_for demo "$DEMO_S" || return
  local dir=$WORK/demo t rc claims
  t=$SECONDS
  bounded demo "$DEMO_S" "${LOFI[@]}" demo --only language --out "$dir"
  rc=$?
  [ -f "$dir/results.md" ] && cp "$dir/results.md" "$OUT/demo-results.md"
  # The printed results: from the language table to the verdicts, where it ran and what it wrote.
  sed -n '/^language (perplexity/,/^written: /p' "$LOGS/demo.log" > "$WORK/demo-table.txt" 2> /dev/null
  if (( rc == 0 )); then
    claims=$(py '
import json, sys
cs = json.load(open(sys.argv[1])).get("claims") or []
print("%d of %d claims hold" % (sum(bool(c.get("holds")) for c in cs), len(cs)) if cs else "no claims in results.json")
' "$dir/results.json" 2>> "$LOG")
    check_row demo PASS "language half in $(( SECONDS - t )) s wall; ${claims:-results.json unreadable}; $(grep -m1 '^ran on ' "$LOGS/demo.log" | cut -c1-160)"
  else
    check_row demo "$(verdict $rc)" "$(why $rc) after $(( SECONDS - t )) s"; tail_of demo 8
  fi
}

prebuilt_summary() {
  local total=$(( SECONDS - T0 ))
  {
    echo "lofi device check --prebuilt, $(date -u '+%Y-%m-%d %H:%M:%S UTC'), $total s; pack from $(info_value COMMIT 2> /dev/null)"
    echo "machine: ${MACHINE:-?}"
    echo "benchmark: seq $BENCH_SEQ x batch $BENCH_BATCH, $([ "$BENCH_PRECISION" = bf16 ] && echo "bf16 autocast" || echo "$BENCH_PRECISION"), fp32 master weights, fused AdamW, clip 1.0, on $BENCH_DEVICE;"
    echo "  tokens/s over steps $BENCH_WARMUP-$BENCH_STEPS; MFU = 6 N tokens/s / $(awk -v p="$PEAK_FLOPS" 'BEGIN { print p / 1e12 }') TFLOP/s (H100 / H200 SXM dense bf16 peak);"
    echo "  MFU+attn adds 12 L d T FLOPs per token (attention scores and values, PaLM's count) for every row alike;"
    echo "  peak mem = the CUDA caching allocator's peak allocated bytes (torch.cuda.max_memory_allocated; lofi's"
    echo "  metrics.jsonl peak_memory_bytes), GiB; '*' = nvidia-smi's used memory instead (lofi logged no peak),"
    echo "  'r' = peak resident memory (a CPU run). lofi/this = lofi's tokens/s over this row's (above 1: lofi is faster)."
    local shape n attn label
    while IFS=$'\t' read -r shape n attn label; do
      echo "  $shape: $label, N = $(awk -v n="$n" 'BEGIN { printf "%.1fM", n / 1e6 }'), attention $(awk -v a="$attn" 'BEGIN { printf "%.0fM", a / 1e6 }') FLOPs/token"
    done < "$SHAPES"
    if [ -s "$WORK/demo-table.txt" ]; then echo "demo (lofi demo --only language) printed:"; sed 's/^/  /' "$WORK/demo-table.txt"; fi
    if [ -s "$PROFILES" ]; then echo "where lofi's steps spend their time (train.profile_steps):"; cat "$PROFILES"; fi
    if [ -s "$TAILS" ]; then echo "failed checks:"; cat "$TAILS"; fi
    echo
    awk -F'\t' -v shapes="$SHAPES" -v peakf="$PEAK_FLOPS" '
      BEGIN {
        while ((getline l < shapes) > 0) { split(l, f, "\t"); N[f[1]] = f[2]; A[f[1]] = f[3]; order[++ns] = f[1] }
        printf "%-20s %-6s %10s %6s %8s %9s %9s  %s\n", "check", "status", "tokens/s", "MFU", "MFU+attn", "peak mem", "lofi/this", "notes"
      }
      { name[NR] = $1; st[NR] = $2; sh[NR] = $3; tps[NR] = $4; pk[NR] = $5; src[NR] = $6; note[NR] = $7
        if ($1 == $3 " lofi" && $4 != "") lofi[$3] = $4 }
      # The checks in the order they ran, then the rows of each shape together.
      function line(i,   t, m, ma, p, r) {
          t = "-"; m = "-"; ma = "-"; p = "-"; r = "-"
          if (tps[i] != "") {
            t = sprintf("%.0f", tps[i])
            m = sprintf("%.1f%%", 100 * 6 * N[sh[i]] * tps[i] / peakf)
            ma = sprintf("%.1f%%", 100 * (6 * N[sh[i]] + A[sh[i]]) * tps[i] / peakf)
            if (name[i] != sh[i] " lofi" && (sh[i] in lofi)) r = sprintf("%.2fx", lofi[sh[i]] / tps[i])
          }
          if (pk[i] != "") p = sprintf("%.1f%s", pk[i] / 2^30, src[i] == "nvidia-smi" ? "*" : src[i] == "rss" ? "r" : "")
          printf "%-20s %-6s %10s %6s %8s %9s %9s  %s\n", name[i], st[i], t, m, ma, p, r, note[i]
      }
      END {
        for (i = 1; i <= NR; i++) if (!(sh[i] in N)) line(i)
        for (k = 1; k <= ns; k++) for (i = 1; i <= NR; i++) if (sh[i] == order[k]) line(i)
      }' "$ROWS"
    echo
    echo "$(grep -c $'\tPASS\t' "$ROWS") PASS, $(grep -c $'\tFAIL\t' "$ROWS") FAIL, $(grep -c $'\tSKIP\t' "$ROWS") SKIP in $total s (logs: device-check.log; cuda-tests.log, bench.jsonl and the rest in details.tar.gz)"
  } > "$SUMMARY"
  cat "$SUMMARY" >> "$LOG"
  # What comes back is at most 16 MB a file.
  if (( $(stat -c %s "$LOG") > 15000000 )); then tail -c 15000000 "$LOG" > "$LOG.tail" && mv "$LOG.tail" "$LOG"; fi
  echo
  cat "$SUMMARY"
}

prebuilt() {
  ROWS=$WORK/rows.tsv SHAPES=$WORK/shapes.tsv TAILS=$WORK/tails.txt PROFILES=$WORK/profiles.txt
  : > "$ROWS"; : > "$SHAPES"; : > "$TAILS"; : > "$PROFILES"
  prebuilt_machine
  if prebuilt_unpack && prebuilt_version; then
    local c impls
    for c in $CHECKS; do
      case $c in
        tests) prebuilt_tests ;;
        llama | opt) read -ra impls <<< "$BENCH_IMPLS"; bench_shape "$c" "${impls[@]}" ;;
        llama:* | opt:* | llama8b-lora:* | llama3b-bf16:*) IFS=, read -ra impls <<< "${c#*:}"; bench_shape "${c%%:*}" "${impls[@]}" ;;
        demo) prebuilt_demo ;;
        *) say "unknown CHECKS entry $c (tests, llama, opt, llama8b-lora:IMPLS, llama3b-bf16:lofi, demo)" ;;
      esac
    done
  fi
  prebuilt_summary
  prebuilt_bundle
}

# A device run brings back at most 8 files: summary.txt and device-check.log stay as they are, the
# rest (cuda-tests.log, bench.jsonl, each shape's metrics and profile, the demo's results) goes into
# details.tar.gz.
prebuilt_bundle() {
  local f rest=()
  for f in "$OUT"/*; do
    case ${f##*/} in summary.txt | device-check.log | details.tar.gz) ;; *) rest+=("${f##*/}") ;; esac
  done
  (( ${#rest[@]} == 0 )) && return
  if tar -C "$OUT" -czf "$OUT/details.tar.gz" "${rest[@]}"; then
    (cd "$OUT" && rm -rf "${rest[@]}")
  fi
}

# ---- main -------------------------------------------------------------------------------------------
MODE=check
case "${1:-}" in
  --fetch-debs) fetch_debs; exit $? ;;
  --pack) pack; exit $? ;;
  --prebuilt) MODE=prebuilt ;;
  --prefix-only) MODE=prefix-only ;;
  "") ;;
  -h|--help) sed -n '2,/^set -u/p' "$0" | sed '$d'; exit 0 ;;
  *) echo "unknown argument $1 (see --help)" >&2; exit 2 ;;
esac

T0=$SECONDS
# --prebuilt ends within 8 minutes: 455 s, the summary and the last command's kill grace.
if [ "$MODE" = prebuilt ]; then TOTAL_BUDGET_S=${TOTAL_BUDGET_S:-455}; else TOTAL_BUDGET_S=${TOTAL_BUDGET_S:-470}; fi
BUILD_BUDGET_S=${BUILD_BUDGET_S:-240}
CUDA_TEST_BUDGET_S=${CUDA_TEST_BUDGET_S:-45}
RUNS_BUDGET_S=${RUNS_BUDGET_S:-120}
BENCH_BUDGET_S=${BENCH_BUDGET_S:-130}
UNIT_TEST_BUDGET_S=${UNIT_TEST_BUDGET_S:-60}
BENCH_SEQ=${BENCH_SEQ:-2048} BENCH_BATCH=${BENCH_BATCH:-8}
PY=${LOFI_DEVICE_PYTHON:-/opt/torch/.venv/bin/python}
BUILD=${BUILD_DIR:-build-gpu}
if [ "$MODE" = prebuilt ]; then
  BENCH_STEPS=${BENCH_STEPS:-20} BENCH_WARMUP=${BENCH_WARMUP:-10}
  # CHECKS="" checks that lofi starts, nothing more.
  CHECKS=${CHECKS-tests llama:lofi,torch-compile llama:lofi-graphs llama8b-lora:lofi,hf-eager opt:lofi,torch-compile opt:lofi-graphs llama3b-bf16:lofi demo llama:torch-eager,hf-eager opt:torch-eager,hf-eager llama:hf-compile opt:hf-compile}
  BENCH_IMPLS=${BENCH_IMPLS:-lofi torch-compile torch-eager hf-eager hf-compile}
  BENCH_DEVICE=${BENCH_DEVICE:-cuda} BENCH_PRECISION=${BENCH_PRECISION:-bf16}
  CUDA_TEST_S=${CUDA_TEST_S:-90} CUDA_TEST_SHARDS=${CUDA_TEST_SHARDS:-6} LOFI_S=${LOFI_S:-90} LOFI_BIG_S=${LOFI_BIG_S:-200}
  EAGER_S=${EAGER_S:-75} COMPILE_S=${COMPILE_S:-150}
  DEMO_S=${DEMO_S:-180}
  PEAK_FLOPS=${PEAK_FLOPS:-989e12}
  if [ ! -x "$PY" ]; then
    if [ -x "$(dirname "$PY")/python3" ]; then PY=$(dirname "$PY")/python3; else PY=$(command -v python3); fi
  fi
else
  BENCH_STEPS=${BENCH_STEPS:-30}
fi
if [ -z "${OUT:-}" ]; then
  # --prefix-only is a local check: its log goes to a temporary folder, not into the checkout.
  case $MODE in
    prefix-only) OUT=$(mktemp -d "${TMPDIR:-/tmp}/lofi-prefix-check.XXXXXX") ;;
    prebuilt) OUT=$DEVRUN/out ;;
    *) OUT=$ROOT/device-check-out ;;
  esac
  echo "OUT is not set: writing to $OUT"
fi
LOG=$OUT/device-check.log LOGS=$OUT/logs SUMMARY=$OUT/summary.txt
if [ "$MODE" = prebuilt ]; then
  # What comes back from a device run is a few files: the commands' own logs stay here (each is also
  # copied into device-check.log).
  mkdir -p "$OUT"
  LOGS=$(mktemp -d "${TMPDIR:-/tmp}/lofi-device-logs.XXXXXX")
  rm -f "$OUT/bench.jsonl"
else
  mkdir -p "$LOGS"
fi
: > "$LOG"
: > "$SUMMARY"
STEP_END=$(( SECONDS + TOTAL_BUDGET_S ))
say "lofi device check ($MODE), $(date -u '+%Y-%m-%d %H:%M:%S UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'), total budget $TOTAL_BUDGET_S s"

if [ "$MODE" = prefix-only ]; then
  step_build
  say "CMake would get: ${CMAKE_EXTRA[*]:-nothing extra}; lofi and ctest would run under: ${RUN_ENV[*]}"
  exit 0
fi

# Run directories and the benchmark's checkpoints (GBs) stay outside $OUT; only small files come back.
WORK=$(mktemp -d "${TMPDIR:-/tmp}/lofi-device-check.XXXXXX")
# shellcheck disable=SC2317  # called by the trap
cleanup() {
  if [ -n "$MEM_PID" ]; then kill "$MEM_PID" 2> /dev/null; fi
  rm -rf "$WORK"
  [ "$MODE" = prebuilt ] && rm -rf "$LOGS"
  local link
  for link in "${CREATED_LINKS[@]}"; do [ -L "$link" ] && rm -f "$link"; done
}
trap cleanup EXIT

if [ "$MODE" = prebuilt ]; then
  prebuilt
  exit 0
fi

step_machine
build_ok=1
step_build || build_ok=0
if (( build_ok )); then
  section "c. CUDA tests (budget ${CUDA_TEST_BUDGET_S} s)"
  # Three tests of about six small lofi runs each (tests/dist_test.cpp, CudaDist.*): side by side,
  # as they are small beside the GPU.
  ctest_label cuda-tests cuda "$CUDA_TEST_BUDGET_S" -j 3
  if (( HAVE_GPU )); then
    step_runs
    step_bench
  else
    for c in runs bench; do result SKIP "$c" "no GPU visible to torch"; done
  fi
  section "c'. unit tests (budget ${UNIT_TEST_BUDGET_S} s)"
  ctest_label unit-tests unit "$UNIT_TEST_BUDGET_S" -j 8
else
  for c in cuda-tests runs bench unit-tests; do result SKIP "$c" "the build failed"; done
fi

section "summary ($OUT/summary.txt)"
cat "$SUMMARY"
say "total $(( SECONDS - T0 )) s; $(grep -c '^PASS' "$SUMMARY") PASS, $(grep -c '^FAIL' "$SUMMARY") FAIL, $(grep -c '^SKIP' "$SUMMARY") SKIP"
(( build_ok )) || exit 1
exit 0
