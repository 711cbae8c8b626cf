# Shared by run.sh and instructions.sh (sourced, not run).

# The app binary for $FRAMEWORK, its governor peer's variant name, and the
# app built with the `http-bench` profile (release, one codegen unit, fat
# LTO: see Cargo.toml).
case "${FRAMEWORK:=axum}" in
  axum) bin=target/http-bench/ratelimit-http-bench; peer=tower-governor ;;
  actix) bin=target/http-bench/ratelimit-http-bench-actix; peer=actix-governor ;;
  *) echo "FRAMEWORK is axum or actix"; exit 1 ;;
esac

# Waits for the app started as $pid, logging to $1, to print its address
# and sets $addr; gives up (stopping the app) after $2 tries of 50 ms or
# if the address is not on loopback.
await_address() {
  addr=""
  for _ in $(seq 1 "$2"); do
    addr=$(sed -n 's|^listening on http://||p' "$1")
    [ -n "$addr" ] && break
    sleep 0.05
  done
  [ -n "$addr" ] || { cat "$1"; kill "$pid"; exit 1; }
  case "$addr" in
    127.0.0.1:*) ;;
    *) echo "refusing non-loopback $addr"; kill "$pid"; exit 1 ;;
  esac
}
