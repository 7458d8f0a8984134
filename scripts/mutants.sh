#!/usr/bin/env bash
# make mutants: proves the tests catch the bugs that matter. Each semantic mutant of
# tests/mutants.txt (one changed line in the code that matters) is applied to a scratch copy of the
# tree, rebuilt incrementally, and run against the tests that should catch it. Prints one row per
# mutant (killed / SURVIVED / no-build, seconds) and exits non-zero if any survived or failed to
# build. Not part of CI: a full build of the scratch copy once, then about a minute per mutant.
# CI checks the list itself (Mutants.ListParsesAndEveryMutantApplies): every block well formed and
# every mutant's text found exactly once in its file.
#   MUTANTS_DIR   scratch folder (default /tmp/lofi-mutants; the build there is reused by later runs)
#   MUTANTS_ONLY  a regex: run only the mutants whose ID matches
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
ws=${MUTANTS_DIR:-/tmp/lofi-mutants}
jobs=$(nproc)
list="$root/tests/mutants.txt"

# A copy of the tracked tree (what a clean clone holds), refreshed from the checkout each run.
mkdir -p "$ws/tree"
# Only files whose content differs are copied (with a new mtime), so the scratch build recompiles
# exactly what changed since the last run.
(cd "$root" && git ls-files -z | while IFS= read -r -d '' f; do
  if ! cmp -s "$f" "$ws/tree/$f"; then mkdir -p "$ws/tree/$(dirname "$f")" && cp "$f" "$ws/tree/$f"; fi
done)
# The unmutated files are restored from this snapshot, so editing the checkout during a run is safe.
rm -rf "$ws/orig" && cp -a "$ws/tree" "$ws/orig"
venv="$(bash "$root/scripts/python-env.sh")"
if [ ! -f "$ws/build/build.ninja" ]; then
  cmake -S "$ws/tree" -B "$ws/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DLOFI_PYTHON="$venv/bin/python" \
        -DLOFI_TEST_PYTHON="$venv/bin/python" > "$ws/configure.log" 2>&1 || { cat "$ws/configure.log"; exit 1; }
fi
echo "mutants: building the unmutated copy in $ws/build"
cmake --build "$ws/build" -j "$jobs" > "$ws/build.log" 2>&1 || { tail -30 "$ws/build.log"; exit 1; }

printf '%-30s %-10s %6s  %s\n' mutant result s "tests (ctest -R)"
killed=0 survived=0 broken=0
# The list's blocks as five NUL-terminated fields each (scripts/mutants_list.py; a malformed list
# stops here, naming its line).
records="$ws/mutants.records"
python3 "$root/scripts/mutants_list.py" "$list" "$root" > "$records" || exit 1
while IFS= read -r -d '' id && IFS= read -r -d '' file && IFS= read -r -d '' from && IFS= read -r -d '' to &&
      IFS= read -r -d '' tests; do
  if [ -n "${MUTANTS_ONLY:-}" ] && ! [[ "$id" =~ $MUTANTS_ONLY ]]; then continue; fi
  target="$ws/tree/$file"
  cp "$ws/orig/$file" "$target"
  if ! python3 - "$target" "$from" "$to" <<'PY'
import sys
path, old, new = sys.argv[1:4]
text = open(path, encoding="utf-8").read()
if text.count(old) != 1:
    sys.exit(f"mutants: '{old}' occurs {text.count(old)} times in {path}, expected once")
open(path, "w", encoding="utf-8").write(text.replace(old, new))
PY
  then
    printf '%-30s %-10s\n' "$id" "bad-line"; broken=$((broken + 1)); continue
  fi
  start=$(date +%s)
  if ! cmake --build "$ws/build" -j "$jobs" > "$ws/$id.build.log" 2>&1; then
    result=no-build; broken=$((broken + 1))
  elif (cd "$ws/build" && timeout 900 ctest -R "$tests" -j "$jobs" --timeout 300 > "$ws/$id.test.log" 2>&1); then
    if grep -q "No tests were found" "$ws/$id.test.log"; then result=no-tests; broken=$((broken + 1))
    else result=SURVIVED; survived=$((survived + 1)); fi
  else
    result=killed; killed=$((killed + 1))
  fi
  printf '%-30s %-10s %6d  %s\n' "$id" "$result" $(( $(date +%s) - start )) "$tests"
  cp "$ws/orig/$file" "$target"  # back to the original (a new mtime: ninja rebuilds it)
done < "$records"
cmake --build "$ws/build" -j "$jobs" > /dev/null 2>&1  # leave the scratch build unmutated
echo "mutants: $killed killed, $survived survived, $broken did not build or matched no test (logs in $ws)"
[ "$survived" -eq 0 ] && [ "$broken" -eq 0 ]
