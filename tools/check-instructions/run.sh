#!/usr/bin/env bash
# Instructions per check of the limiter's check paths on the in-memory
# store, under valgrind's callgrind: the instructions inside the check
# closure (set-up excluded: the system clock's calibration varies from run
# to run) / (N + 1). Repeats to within a few instructions from run to run.
#
#   bash tools/check-instructions/run.sh          (N=200000)
#   BIN=/other/checkout/target/release/ratelimit-check-instructions bash ...
#   PATHS="one choice three"        (the paths to count)
#                                   measures another build the same way
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${N:-200000}
command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)"; exit 1; }
if [ -z "${BIN:-}" ]; then
  cargo build --release -q -p ratelimit-check-instructions
  BIN=target/release/ratelimit-check-instructions
fi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
count() {  # count PATH N: the instructions of N + 1 checks
  valgrind --tool=callgrind --toggle-collect='ratelimit_check_instructions::run::{{closure}}*' \
    --callgrind-out-file="$dir/out" "$BIN" "$1" "$2" >/dev/null 2>&1
  sed -n 's/^summary: //p' "$dir/out"
}
printf '%-8s %18s\n' path "instructions/check"
for path in ${PATHS:-one choice facets three}; do
  total=$(count "$path" "$N")
  printf '%-8s %18s\n' "$path" $(( total / (N + 1) ))
done
