#!/usr/bin/env bash
# Redis server CPU time per check (INFO commandstats usec_per_call) of the
# project's GCRA script against a plain INCR, an empty script and a
# straightforward GCRA script (reference.lua: GET, TIME, SET PX), all on one
# private redis-server on a free loopback port, in the same run, loaded by
# redis-benchmark. 1 and 3 rules, every check allowed, then every check
# denied (after a warm-up fills the keys).
#
#   bash tools/script-cost/run.sh        (ROUNDS=3 N=200000 by default)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${ROUNDS:-3}
N=${N:-200000}
KEYSPACE=10000
for tool in redis-server redis-cli redis-benchmark; do
  command -v "$tool" >/dev/null || { echo "$tool is needed (apt-get install redis-server redis-tools)"; exit 1; }
done
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
dir=$(mktemp -d)
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" >"$dir/log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$dir"' EXIT
cli() { redis-cli -h 127.0.0.1 -p "$port" "$@"; }
for _ in $(seq 1 50); do cli PING >/dev/null 2>&1 && break; sleep 0.1; done

ours=$(cli SCRIPT LOAD "$(cat "${OURS:-ratelimit-redis/src/gcra.lua}")")
reference=$(cli SCRIPT LOAD "$(cat tools/script-cost/reference.lua)")
empty=$(cli SCRIPT LOAD "$(cat tools/script-cost/empty.lua)")

# Allowed: 1 us interval, 10^12 us tolerance. Denied: one per hour.
ALLOW="1 1000000000000"
DENY="3600000000 3600000000"

# command FORM N LABEL LIMITS: fills the array CMD with an EVALSHA of N keys.
command_for() {
  local form=$1 n=$2 label=$3 limits=$4 i
  local sha=$ours
  [ "$form" = reference ] && sha=$reference
  CMD=(EVALSHA "$sha" "$n")
  for i in $(seq 1 "$n"); do CMD+=("rl:{u=__rand_int__}:$label$i"); done
  # Ours: the charge flag, then increment and tolerance per counter.
  [ "$form" = ours ] && CMD+=(1)
  for i in $(seq 1 "$n"); do
    # shellcheck disable=SC2206
    CMD+=($limits)
  done
  return 0
}

# measure NAME STAT WARMUP COMMAND...: usec_per_call of cmdstat_STAT.
measure() {
  local name=$1 stat=$2 warmup=$3; shift 3
  if [ "$warmup" = yes ]; then
    redis-benchmark -h 127.0.0.1 -p "$port" -q -n $((KEYSPACE * 4)) -c 8 -r "$KEYSPACE" "$@" >/dev/null
  fi
  cli CONFIG RESETSTAT >/dev/null
  redis-benchmark -h 127.0.0.1 -p "$port" -q -n "$N" -c 8 -r "$KEYSPACE" "$@" >/dev/null
  local line
  line=$(cli INFO commandstats | tr -d '\r' | grep "^cmdstat_$stat:")
  printf '%-6s %-30s %8s\n' "$round" "$name" "$(sed 's/.*usec_per_call=\([0-9.]*\).*/\1/' <<<"$line")"
}

printf '%-6s %-30s %8s\n' round variant "usec/call"
for round in $(seq 1 "$ROUNDS"); do
  cli FLUSHALL >/dev/null
  measure incr incr no INCR "k:__rand_int__"
  measure "empty script" evalsha no EVALSHA "$empty" 0
  for n in 1 3; do
    for regime in allowed denied; do
      limits=$ALLOW; warm=no
      [ "$regime" = denied ] && { limits=$DENY; warm=yes; }
      for form in reference ours; do
        command_for "$form" "$n" "${form:0:1}${regime:0:1}" "$limits"
        measure "$form $n rule(s) $regime" evalsha "$warm" "${CMD[@]}"
      done
    done
  done
done
