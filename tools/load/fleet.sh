#!/usr/bin/env bash
# The fleet benchmark: every scenario of the README's table, each a bounded
# run of the load tool (3 s) against a private Redis (or a private 3-master
# Redis Cluster) on free loopback ports. Prints one line per scenario,
# starting with the exact command that reproduces it.
#
#   bash tools/load/fleet.sh            (DURATION_MS=3000 by default;
#   ONLY=pattern runs the scenarios whose arguments match)
set -euo pipefail
cd "$(dirname "$0")/../.."
DURATION_MS=${DURATION_MS:-3000}
cargo build --release -q -p ratelimit-load
bin=target/release/ratelimit-load

# "mostly allowed": 1,000,000 per hour per caller. "mostly denied": 1 per
# hour per caller (after each caller's first request; with --prefill, from
# the start). "saturated": one global counter of 20,000 per second asked
# far more often than that, with and without hot-key batches. 16 tasks in all.
scenarios=(
  "--spawn-redis --instances 1 --keys 1 --global --limit 1000000000"
  "--spawn-redis --instances 1 --keys 1 --global --limit 1"
  "--spawn-redis --instances 1 --keys 1 --global --limit 1 --deny-cache 100000"
  "--spawn-redis --instances 1 --keys 10000 --limit 1000000"
  "--spawn-redis --instances 1 --keys 10000 --limit 1"
  "--spawn-redis --instances 1 --keys 10000 --limit 1 --deny-cache 100000"
  "--spawn-redis --instances 3 --keys 10000 --limit 1000000"
  "--spawn-redis --instances 3 --keys 10000 --limit 1"
  "--spawn-redis --instances 3 --keys 10000 --limit 1 --deny-cache 100000"
  "--spawn-redis --instances 1 --keys 1000000 --limit 1000000"
  "--spawn-redis --instances 3 --keys 1000000 --limit 1000000"
  "--spawn-redis --instances 1 --keys 1000000 --limit 1 --prefill"
  "--spawn-redis --instances 1 --keys 1000000 --limit 1 --prefill --deny-cache 2000000"
  "--spawn-redis --instances 1 --keys 1 --global --limit 20000 --window-ms 1000"
  "--spawn-redis --instances 1 --keys 1 --global --limit 20000 --window-ms 1000 --batch 64"
  "--spawn-redis --instances 3 --keys 1 --global --limit 20000 --window-ms 1000"
  "--spawn-redis --instances 3 --keys 1 --global --limit 20000 --window-ms 1000 --batch 64"
  "--spawn-cluster --instances 3 --keys 1 --global --limit 20000 --window-ms 1000"
  "--spawn-cluster --instances 3 --keys 1 --global --limit 20000 --window-ms 1000 --batch 64"
  "--spawn-cluster --instances 1 --keys 10000 --limit 1000000"
  "--spawn-cluster --instances 1 --keys 10000 --limit 1"
  "--spawn-cluster --instances 1 --keys 10000 --limit 1 --deny-cache 100000"
  "--spawn-cluster --instances 3 --keys 10000 --limit 1000000"
  "--spawn-cluster --instances 3 --keys 10000 --limit 1 --deny-cache 100000"
)
for scenario in "${scenarios[@]}"; do
  if [ -n "${ONLY:-}" ] && ! grep -q -- "$ONLY" <<<"$scenario"; then continue; fi
  # shellcheck disable=SC2086
  line=$("$bin" $scenario --tasks 16 --duration-ms "$DURATION_MS" 2>&1 | tail -1)
  echo "cargo run --release -p ratelimit-load -- $scenario --tasks 16 --duration-ms $DURATION_MS"
  echo "  $line"
done
