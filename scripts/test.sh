#!/usr/bin/env bash
# Builds moe-mlir and runs every test: the lit regression suite and the
# GoogleTest units (through ctest), then the same suites again under
# AddressSanitizer + UBSan (skip with MOE_SKIP_SANITIZERS=1).
# Prints each runner's summary and a combined "N passed, N failed" line.
set -uo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh || { echo "dependency installation failed"; exit 1; }

LIT=/usr/lib/llvm-22/bin/lit
total_pass=0
total_fail=0

# run_suites BUILD_DIR: runs lit and ctest in BUILD_DIR, accumulating counts.
run_suites() {
  local dir=$1
  local lit_log="$dir/lit-results.txt"
  "$LIT" -sv "$dir/test" 2>&1 | tee "$lit_log"
  local lit_pass lit_fail
  lit_pass=$(grep -E '^\s*Passed\s*:' "$lit_log" | awk '{print $NF}' | tail -1)
  lit_fail=$(grep -E '^\s*(Failed|Unresolved|Timed Out|Unexpectedly Passed)\s*:' "$lit_log" \
             | awk '{s+=$NF} END {print s+0}')
  local ctest_log="$dir/ctest-results.txt"
  ctest --test-dir "$dir" --output-on-failure 2>&1 | tee "$ctest_log"
  local ct_line ct_fail ct_total
  ct_line=$(grep -E 'tests passed, [0-9]+ tests failed out of' "$ctest_log" | tail -1)
  ct_fail=$(echo "$ct_line" | sed -E 's/.* ([0-9]+) tests failed out of ([0-9]+).*/\1/')
  ct_total=$(echo "$ct_line" | sed -E 's/.* tests failed out of ([0-9]+).*/\1/')
  if [ -z "$ct_line" ]; then ct_fail=1; ct_total=1; fi
  total_pass=$((total_pass + ${lit_pass:-0} + ct_total - ct_fail))
  total_fail=$((total_fail + ${lit_fail:-0} + ct_fail))
  if [ -z "${lit_pass}" ]; then total_fail=$((total_fail + 1)); fi
}

echo "=== build (Release) ==="
if ! BUILD_DIR=build bash scripts/build.sh; then
  echo "build failed"
  exit 1
fi
run_suites build

if [ "${MOE_SKIP_SANITIZERS:-0}" != "1" ]; then
  echo "=== build (AddressSanitizer + UBSan) ==="
  if BUILD_DIR=build-asan BUILD_TYPE=RelWithDebInfo bash scripts/build.sh \
       -DMOE_ENABLE_SANITIZERS=ON; then
    # libMLIR.so is not instrumented: containers crossing into it would give
    # false container-overflow reports, and its registries live for the
    # whole process, so leak checking is off.
    export ASAN_OPTIONS=detect_leaks=0:detect_container_overflow=0
    export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
    run_suites build-asan
  else
    echo "sanitizer build failed"
    total_fail=$((total_fail + 1))
  fi
fi

echo
echo "moe: ${total_pass} passed, ${total_fail} failed"
[ "$total_fail" -eq 0 ]
