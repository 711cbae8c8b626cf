#!/usr/bin/env bash
# Load-tests a hello-world axum app with no limiter, with ratelimit's layer
# and with tower_governor's, with every request allowed and under a flood of
# denied requests. Server: 1 Tokio worker; wrk: 1 thread, 32 connections,
# $DURATION seconds each, on loopback only. Prints requests/s, the share of
# non-2xx answers and the server's CPU time per request, then per regime and
# limiter the median of the rounds and its ratio to the median of `none`
# (variants take turns within each round, so slow drifts of a shared machine
# hit them alike; more, shorter rounds give steadier medians), and the best
# round of each (most requests/s, least CPU per request): a neighbour on the
# host only ever slows a round down, so the best rounds are the least
# disturbed ones.
#
#   bash tools/http-bench/run.sh            (DURATION=5 ROUNDS=2 by default;
#   REGIMES="allowed flood" and LIMITERS="none static-headers ratelimit
#   tower-governor" pick a subset; also ratelimit-denials-only and
#   tower-governor-headers / actix-governor-headers)
#   FRAMEWORK=actix bash tools/http-bench/run.sh   (the actix-web app; its
#   peer is actix-governor)
set -euo pipefail
cd "$(dirname "$0")/../.."
DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-2}
REGIMES=${REGIMES:-allowed flood}
. tools/http-bench/common.sh
LIMITERS=${LIMITERS:-none static-headers ratelimit $peer}
command -v wrk >/dev/null || { echo "wrk is needed (apt-get install wrk)"; exit 1; }
cargo build --profile http-bench -q -p ratelimit-http-bench
ticks=$(getconf CLK_TCK)

results=$(mktemp)
trap 'rm -f "$results"' EXIT
printf '%-6s %-8s %-22s %12s %8s %14s\n' round regime limiter "requests/s" non-2xx "server CPU/req"
for round in $(seq 1 "$ROUNDS"); do
  for regime in $REGIMES; do
    for limiter in $LIMITERS; do
      log=$(mktemp)
      "$bin" --limiter "$limiter" --regime "$regime" >"$log" 2>&1 &
      pid=$!
      await_address "$log" 100
      cpu_before=$(awk '{print $14 + $15}' "/proc/$pid/stat")
      out=$(wrk -t1 -c32 -d"${DURATION}s" "http://$addr/")
      cpu_after=$(awk '{print $14 + $15}' "/proc/$pid/stat")
      kill "$pid"; wait "$pid" 2>/dev/null || true
      rps=$(sed -n 's/^Requests\/sec: *//p' <<<"$out")
      total=$(sed -n 's/^ *\([0-9]*\) requests in.*/\1/p' <<<"$out")
      non2xx=$(sed -n 's/^ *Non-2xx or 3xx responses: *//p' <<<"$out")
      non2xx=${non2xx:-0}
      cpu_us=$(awk -v c="$((cpu_after - cpu_before))" -v t="$ticks" -v n="$total" 'BEGIN { printf "%.2f us", c / t * 1e6 / n }')
      share=$(awk -v a="$non2xx" -v n="$total" 'BEGIN { printf "%.1f%%", 100 * a / n }')
      printf '%-6s %-8s %-22s %12s %8s %14s\n' "$round" "$regime" "$limiter" "$rps" "$share" "$cpu_us"
      echo "$regime $limiter $rps ${cpu_us% us}" >>"$results"
      rm -f "$log"
    done
  done
done

# Column $3 over the rounds of regime $1 and limiter $2, summarised by $4:
# median, max or min.
summary() {
  awk -v r="$1" -v l="$2" -v c="$3" '$1 == r && $2 == l { print $c }' "$results" | sort -g |
    awk -v how="$4" '{ v[NR] = $1 } END {
      if (how == "max") print v[NR]
      else if (how == "min") print v[1]
      else print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# One table: requests/s summarised by $1 and CPU per request by $2.
table() {
  printf '%-8s %-22s %12s %8s %14s %8s\n' regime limiter "requests/s" ratio "server CPU/req" ratio
  for regime in $REGIMES; do
    base_rps=""; base_cpu=""
    for limiter in $LIMITERS; do
      rps=$(summary "$regime" "$limiter" 3 "$1")
      cpu=$(summary "$regime" "$limiter" 4 "$2")
      if [ "$limiter" = none ]; then base_rps=$rps; base_cpu=$cpu; fi
      awk -v r="$regime" -v l="$limiter" -v rps="$rps" -v cpu="$cpu" -v br="$base_rps" -v bc="$base_cpu" 'BEGIN {
        rr = (br == "") ? "-" : sprintf("%.3f", rps / br)
        cr = (bc == "") ? "-" : sprintf("%.3f", cpu / bc)
        printf "%-8s %-22s %12.0f %8s %11.2f us %8s\n", r, l, rps, rr, cpu, cr }'
    done
  done
}

echo
echo "medians of $ROUNDS rounds (ratio: to the same regime's none)"
table median median
echo
echo "best of $ROUNDS rounds (most requests/s, least CPU per request)"
table max min
