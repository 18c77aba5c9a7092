#!/usr/bin/env bash
# The soak (not a CI test): a release gateway with five stdio fixture backends
# under steady MCP calls from several clients, its config rewritten every 5 s
# (a reload) and one backend SIGKILLed every 10 s. Prints calls made, failed
# calls to the healthy backends, the gateway's RSS and open fds at start and
# end, and the fixture processes left after the gateway stopped.
#
#   scripts/soak.sh          # 600 s
#   scripts/soak.sh 60       # a quick look
#
# Extra arguments go to examples/soak.rs (`--clients 8`, `--pause-ms 0`, ...).
# Honours CARGO_TARGET_DIR. The exit status is 1 when a call to a healthy
# backend failed or a process was left behind.
set -euo pipefail
seconds="${1:-600}"
shift || true
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
target="${CARGO_TARGET_DIR:-$root/target}"
cargo build --release --bin manifold --bin manifold-fixture --example soak
out="$(mktemp -t manifold-soak.XXXXXX)"
"$target/release/examples/soak" --seconds "$seconds" \
  --manifold "$target/release/manifold" --fixture "$target/release/manifold-fixture" "$@" | tee "$out"
grep -q '^FAILED CALLS TO HEALTHY BACKENDS: 0$' "$out" && grep -q '^LEFTOVER PROCESSES: 0$' "$out"
