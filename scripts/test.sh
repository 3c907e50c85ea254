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

# number VALUE: prints VALUE if it is a count, else 0. Summaries that cannot
# be read at all are counted in parse_errors and fail the run.
parse_errors=0
number() {
  if [[ "$1" =~ ^[0-9]+$ ]]; then echo "$1"; else echo 0; fi
}

# run_suites BUILD_DIR: runs lit and ctest in BUILD_DIR, accumulating counts.
run_suites() {
  local dir=$1
  local lit_log="$dir/lit-results.txt"
  "$LIT" -sv "$dir/test" 2>&1 | tee "$lit_log"
  # lit's summary lines look like "  Passed: 21 (100.00%)", padded as
  # "  Passed     : 41 (95.35%)" when other categories are listed.
  local lit_pass lit_fail
  lit_pass=$(sed -nE 's/^ *Passed *: *([0-9]+).*/\1/p' "$lit_log" | tail -1)
  lit_fail=$(awk '/^ *(Failed|Unresolved|Timed Out|Unexpectedly Passed) *:/ {s += $(NF-1)} END {print s+0}' "$lit_log")
  if ! [[ "$lit_pass" =~ ^[0-9]+$ ]]; then
    echo "test.sh: could not read lit's summary in $lit_log"
    parse_errors=$((parse_errors + 1)); lit_pass=0
  fi
  local ctest_log="$dir/ctest-results.txt"
  ctest --test-dir "$dir" --output-on-failure 2>&1 | tee "$ctest_log"
  local ct_line ct_fail ct_total
  ct_line=$(grep -E 'tests passed, [0-9]+ tests failed out of [0-9]+' "$ctest_log" | tail -1)
  ct_fail=$(echo "$ct_line" | sed -E 's/.* ([0-9]+) tests failed out of ([0-9]+).*/\1/')
  ct_total=$(echo "$ct_line" | sed -E 's/.* tests failed out of ([0-9]+).*/\1/')
  if ! [[ "$ct_fail" =~ ^[0-9]+$ && "$ct_total" =~ ^[0-9]+$ ]]; then
    echo "test.sh: could not read ctest's summary in $ctest_log"
    parse_errors=$((parse_errors + 1)); ct_fail=0; ct_total=0
  fi
  total_pass=$((total_pass + lit_pass + ct_total - ct_fail))
  total_fail=$((total_fail + $(number "$lit_fail") + ct_fail))
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
    # allow_user_poisoning=0: LLVM's allocators poison memory by hand when
    # their inline code is compiled with ASan, which uninstrumented
    # libMLIR.so then reports as use-after-poison.
    export ASAN_OPTIONS=detect_leaks=0:detect_container_overflow=0:allow_user_poisoning=0
    export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
    run_suites build-asan
  else
    echo "sanitizer build failed"
    total_fail=$((total_fail + 1))
  fi
fi

total_fail=$((total_fail + parse_errors))
echo
echo "moe: ${total_pass} passed, ${total_fail} failed"
[ "$total_fail" -eq 0 ] && [ "$total_pass" -gt 0 ]
