#!/usr/bin/env bash
# Counts the server's CPU instructions per request for each variant of the
# http-bench app, under valgrind's callgrind: unlike requests/s on a shared
# machine, the count repeats to within a few instructions from run to run,
# so differences of 1% are real. It counts instructions, not time (cache
# misses and system calls weigh the same as any instruction), so it
# complements run.sh rather than replacing it.
#
# Per variant: start the app under callgrind, warm it up with wrk (1 s),
# zero the counters, load it with wrk (1 connection, $DURATION s, loopback
# only), dump the counters, and divide by the requests wrk completed.
#
#   bash tools/http-bench/instructions.sh     (DURATION=3; REGIMES and
#   LIMITERS as in run.sh; FRAMEWORK=actix for the actix-web app;
#   KEEP=DIR keeps each variant's callgrind profile in DIR for
#   callgrind_annotate)
set -euo pipefail
cd "$(dirname "$0")/../.."
DURATION=${DURATION:-3}
REGIMES=${REGIMES:-allowed flood}
. tools/http-bench/common.sh
LIMITERS=${LIMITERS:-none static-headers ratelimit ratelimit-denials-only $peer $peer-headers}
command -v wrk >/dev/null || { echo "wrk is needed (apt-get install wrk)"; exit 1; }
command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)"; exit 1; }
cargo build --profile http-bench -q -p ratelimit-http-bench

printf '%-8s %-24s %10s %16s %8s\n' regime limiter requests "instructions/req" ratio
for regime in $REGIMES; do
  base=""
  for limiter in $LIMITERS; do
    dir=$(mktemp -d)
    valgrind --tool=callgrind --callgrind-out-file="$dir/profile.%p" \
      "$bin" --limiter "$limiter" --regime "$regime" >"$dir/log" 2>&1 &
    pid=$!
    # Slower to start under valgrind.
    await_address "$dir/log" 400
    wrk -t1 -c1 -d1s "http://$addr/" >/dev/null
    callgrind_control --zero "$pid" >/dev/null 2>&1
    out=$(wrk -t1 -c1 -d"${DURATION}s" "http://$addr/")
    callgrind_control --dump "$pid" >/dev/null 2>&1
    kill "$pid"; wait "$pid" 2>/dev/null || true
    requests=$(sed -n 's/^ *\([0-9]*\) requests in.*/\1/p' <<<"$out")
    profile=$(ls "$dir"/profile.*.1)
    total=$(sed -n 's/^summary: //p' "$profile")
    per=$((total / requests))
    [ "$limiter" = none ] && base=$per
    ratio=$(awk -v p="$per" -v b="$base" 'BEGIN { print (b == "") ? "-" : sprintf("%.3f", p / b) }')
    printf '%-8s %-24s %10s %16s %8s\n' "$regime" "$limiter" "$requests" "$per" "$ratio"
    if [ -n "${KEEP:-}" ]; then
      mkdir -p "$KEEP"
      cp "$profile" "$KEEP/$FRAMEWORK-$regime-$limiter.callgrind"
    fi
    rm -rf "$dir"
  done
done
