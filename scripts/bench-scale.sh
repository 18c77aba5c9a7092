#!/usr/bin/env bash
# Reproduces the scale-out figures in docs/performance.md: several Manifold instances behind
# HAProxy (routing on the session id's prefix, as in docs/scale-out.md), sessions in Redis.
#
#   scripts/bench-scale.sh                       # 10 s per point
#   BENCH_DURATION=3s scripts/bench-scale.sh     # quick look
#
# 1. calls/s and p50/p99 of `tools/call` through the load balancer with 1 and 3 instances
#    (examples/loadgen.rs, c = 8 and 64), every instance with one stdio manifold-fixture;
# 2. examples/failover_bench.rs: Redis operations per initialize and per call, restores in
#    steady state, then SIGKILL of one instance and, for each of its sessions, the time to the
#    first successful call and whether it was restored, re-initialized or failed.
# Needs haproxy (Debian package) and Redis on 127.0.0.1:6379 (use one nobody else is using:
# the Redis operation counts read its global command statistics).
set -euo pipefail

DURATION="${BENCH_DURATION:-10s}"
CONCURRENCY="${BENCH_CONCURRENCY:-8,64}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
work="$(mktemp -d -t manifold-scale.XXXXXX)"
out="${BENCH_OUT:-$root/target/bench-scale.jsonl}"
mkdir -p "$(dirname "$out")"
: >"$out"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
say() { printf 'bench-scale: %s\n' "$*" >&2; }

command -v haproxy >/dev/null || { say "haproxy is not installed (scripts/install-test-deps.sh)"; exit 1; }
say "building release binaries, loadgen and failover_bench"
cargo build --release --bins --example loadgen --example failover_bench >&2
bin="${CARGO_TARGET_DIR:-$root/target}/release"
prefix="manifold-bench-scale-$$"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_ready() { for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:$1/readyz" >/dev/null && return 0; sleep 0.1; done; return 1; }

declare -A port pid
start_instance() { # id
    local id="$1"
    port[$id]="${port[$id]:-$(free_port)}"
    cat >"$work/$id.toml" <<EOF
[server]
instance_id = "$id"
[limits]
max_concurrent_per_client = 1024
[sessions]
store = "redis"
redis_url = "redis://127.0.0.1:6379"
key_prefix = "$prefix"
[backends.shared]
transport = "stdio"
command = "$bin/manifold-fixture"
EOF
    RUST_LOG=warn "$bin/manifold" serve --config "$work/$id.toml" --listen "127.0.0.1:${port[$id]}" \
        >"$work/$id.out" 2>"$work/$id.err" &
    pid[$id]=$!
    pids+=("$!")
    wait_ready "${port[$id]}" || { say "$id did not become ready"; cat "$work/$id.err" >&2; exit 1; }
}

lb_port="$(free_port)"
start_lb() { # ids...
    {
        printf 'global\n    maxconn 4000\ndefaults\n    mode http\n    timeout connect 2s\n'
        printf '    timeout client 60s\n    timeout server 60s\n    timeout tunnel 1h\n'
        printf '    option redispatch\n    retries 3\n    retry-on conn-failure empty-response 503\n'
        printf '    option http-buffer-request\n'
        printf 'frontend mcp\n    bind 127.0.0.1:%s\n    default_backend gateways\n' "$lb_port"
        printf 'backend gateways\n    balance hdr(mcp-session-id)\n    hash-type consistent\n'
        printf '    option httpchk\n    http-check send meth GET uri /readyz hdr Host 127.0.0.1\n'
        printf '    http-check expect status 200\n    default-server inter 200ms fall 1 rise 2\n'
        for id in "$@"; do printf '    use-server %s if { req.hdr(mcp-session-id) -m beg %s. }\n' "$id" "$id"; done
        for id in "$@"; do printf '    server %s 127.0.0.1:%s check\n' "$id" "${port[$id]}"; done
    } >"$work/haproxy.cfg"
    haproxy -db -f "$work/haproxy.cfg" >"$work/haproxy.log" 2>&1 &
    lb_pid=$!
    pids+=("$!")
    for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$lb_port/" && break; sleep 0.05; done
    sleep 1 # two health checks, so every server is up
}

for id in g1 g2 g3; do start_instance "$id"; done

for n in 1 3; do
    ids=(g1 g2 g3)
    start_lb "${ids[@]:0:$n}"
    say "loadgen through haproxy with $n instance(s), c = $CONCURRENCY"
    "$bin/examples/loadgen" --url "http://127.0.0.1:$lb_port/mcp" --tool shared__echo \
        --args '{"message":"hi"}' --concurrency "$CONCURRENCY" --duration "$DURATION" \
        --warmup 2s --label "haproxy/$n-instances" --json | tee -a "$out"
    kill "$lb_pid"; wait "$lb_pid" 2>/dev/null || true
done

start_lb g1 g2 g3
say "failover: steady state, then SIGKILL g1 (pid ${pid[g1]})"
metrics="http://127.0.0.1:${port[g1]},http://127.0.0.1:${port[g2]},http://127.0.0.1:${port[g3]}"
"$bin/examples/failover_bench" --url "http://127.0.0.1:$lb_port/mcp" --tool shared__echo \
    --victim g1 --kill-pid "${pid[g1]}" --metrics "$metrics" --sessions 30 | tee -a "$out"
say "load: $(uptime)"
redis-cli --scan --pattern "$prefix:*" | xargs -r redis-cli del >/dev/null 2>&1 || true
