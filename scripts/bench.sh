#!/usr/bin/env bash
# Reproduces every figure in docs/performance.md.
#
#   scripts/bench.sh                 # full run: 10 s per point after 2 s warm-up
#   BENCH_DURATION=3s scripts/bench.sh   # quick look
#
# Scenarios, all on 127.0.0.1, all driven by examples/loadgen.rs with `tools/call`:
#   fixture-direct       manifold-fixture over streamable HTTP, no gateway (the baseline)
#   manifold/fixture-stdio   Manifold -> manifold-fixture over stdio       (tool fx__echo)
#   manifold/fixture-http    Manifold -> manifold-fixture over HTTP        (tool fxh__echo)
#   manifold/everything      Manifold -> server-everything over stdio      (tool everything__echo)
#   supergateway/everything  supergateway (stateful streamable HTTP) -> server-everything (echo)
# plus the idle RSS of one Manifold process with 10 stdio fixture backends.
#
# The scenarios are interleaved: for each concurrency level, every scenario runs once before
# the next level starts (and BENCH_ROUNDS repeats the whole sweep), so drift in the machine
# hits all of them alike. With several rounds, each point reports the round with the median
# calls/s. Every process the script starts is stopped on exit.
#
# Knobs (environment): BENCH_DURATION (10s), BENCH_WARMUP (2s), BENCH_CONCURRENCY (1,8,64),
# BENCH_ROUNDS (1), BENCH_IDLE_SECS (5), BENCH_LOADGEN_THREADS (1), BENCH_CLIENT (rmcp; `raw`
# uses loadgen's bare HTTP client, to see how much of the latency is the client's own),
# BENCH_OUT (where the raw JSON lines go; target/bench-results.jsonl).
set -euo pipefail

DURATION="${BENCH_DURATION:-10s}"
WARMUP="${BENCH_WARMUP:-2s}"
CONCURRENCY="${BENCH_CONCURRENCY:-1,8,64}"
ROUNDS="${BENCH_ROUNDS:-1}"
IDLE_SECS="${BENCH_IDLE_SECS:-5}"
LOADGEN_THREADS="${BENCH_LOADGEN_THREADS:-1}"
CLIENT="${BENCH_CLIENT:-rmcp}"
ARGS='{"message":"hi"}'

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
work="$(mktemp -d -t manifold-bench.XXXXXX)"
out="${BENCH_OUT:-$root/target/bench-results.jsonl}"
mkdir -p "$(dirname "$out")"
: >"$out"

say() { printf 'bench: %s\n' "$*" >&2; }
die() { printf 'bench: ERROR: %s\n' "$*" >&2; exit 1; }

# Every background process is started in its own session (setsid), so killing its process
# group also stops what it spawned (backends, node children).
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do
        kill -TERM -- "-$pid" 2>/dev/null || true
    done
    sleep 0.5
    for pid in "${pids[@]}"; do
        kill -KILL -- "-$pid" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start NAME CMD... : runs CMD in the background, logging to $work/NAME.{out,err}; sets PID.
start() {
    local name="$1"
    shift
    setsid "$@" >"$work/$name.out" 2>"$work/$name.err" </dev/null &
    PID=$!
    pids+=("$PID")
}

# wait_listening NAME : waits for the one `listening URL` line on NAME's stdout; sets URL.
wait_listening() {
    local name="$1" i line
    for ((i = 0; i < 600; i++)); do
        line="$(grep -m1 '^listening ' "$work/$name.out" 2>/dev/null || true)"
        if [[ -n "$line" ]]; then
            URL="${line#listening }"
            return
        fi
        kill -0 "$PID" 2>/dev/null || { tail -n 20 "$work/$name.err" >&2; die "$name exited before it was ready"; }
        sleep 0.1
    done
    tail -n 20 "$work/$name.err" >&2
    die "$name printed no 'listening' line within 60 s"
}

# wait_port NAME PORT : for servers that print no ready line (supergateway).
wait_port() {
    local name="$1" port="$2" i
    for ((i = 0; i < 600; i++)); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return
        fi
        kill -0 "$PID" 2>/dev/null || { tail -n 20 "$work/$name.err" >&2; die "$name exited before it was ready"; }
        sleep 0.1
    done
    die "$name is not listening on port $port within 60 s"
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# gateway NAME CONFIG_BODY : writes a config, starts `manifold serve` on port 0, sets URL and PID.
gateway() {
    local name="$1" body="$2"
    printf '[server]\nlisten = "127.0.0.1:0"\n\n%s\n' "$body" >"$work/$name.toml"
    start "$name" "$bin/manifold" serve --config "$work/$name.toml" --listen 127.0.0.1:0
    wait_listening "$name"
}

# --- build ----------------------------------------------------------------------------------
scripts/install-test-deps.sh >&2
say "building release binaries and the load generator"
cargo build --release --bins --example loadgen >&2
bin="${CARGO_TARGET_DIR:-$root/target}/release"
loadgen="$bin/examples/loadgen"
fixture="$bin/manifold-fixture"
everything="$root/.test-deps/node_modules/@modelcontextprotocol/server-everything/dist/index.js"
supergateway="$root/.test-deps/node_modules/supergateway/dist/index.js"

# --- start every server once ----------------------------------------------------------------
labels=()
declare -A url tool

start fixture "$fixture" --transport http --listen 127.0.0.1:0
wait_listening fixture
fixture_url="$URL"
labels+=("fixture-direct"); url[fixture-direct]="$URL"; tool[fixture-direct]="echo"

gateway gw-fx-stdio "$(printf '[backends.fx]\ntransport = "stdio"\ncommand = "%s"\nargs = ["--transport", "stdio"]\n' "$fixture")"
labels+=("manifold/fixture-stdio"); url[manifold/fixture-stdio]="$URL"; tool[manifold/fixture-stdio]="fx__echo"

gateway gw-fx-http "$(printf '[backends.fxh]\ntransport = "http"\nurl = "%s"\n' "$fixture_url")"
labels+=("manifold/fixture-http"); url[manifold/fixture-http]="$URL"; tool[manifold/fixture-http]="fxh__echo"

gateway gw-everything "$(printf '[backends.everything]\ntransport = "stdio"\ncommand = "node"\nargs = ["%s", "stdio"]\n' "$everything")"
labels+=("manifold/everything"); url[manifold/everything]="$URL"; tool[manifold/everything]="everything__echo"

# supergateway's stateless mode starts a new server-everything child for every POST (about
# 2 calls/s here), so we compare against its stateful mode: one child per MCP session.
sg_port="$(free_port)"
start supergateway node "$supergateway" --stdio "node $everything stdio" \
    --outputTransport streamableHttp --stateful --port "$sg_port" --logLevel none
wait_port supergateway "$sg_port"
labels+=("supergateway/everything"); url[supergateway/everything]="http://127.0.0.1:$sg_port/mcp"; tool[supergateway/everything]="echo"

# --- interleaved load -----------------------------------------------------------------------
IFS=',' read -r -a levels <<<"$CONCURRENCY"
for ((round = 1; round <= ROUNDS; round++)); do
    for c in "${levels[@]}"; do
        for label in "${labels[@]}"; do
            say "round $round/$ROUNDS  c=$c  $label"
            "$loadgen" --url "${url[$label]}" --tool "${tool[$label]}" --args "$ARGS" \
                --concurrency "$c" --duration "$DURATION" --warmup "$WARMUP" \
                --threads "$LOADGEN_THREADS" --client "$CLIENT" --label "$label" --json >>"$out"
        done
    done
done

# --- idle RSS with 10 stdio backends --------------------------------------------------------
body=""
for i in $(seq 0 9); do
    body+="$(printf '[backends.fx%d]\ntransport = "stdio"\ncommand = "%s"\nargs = ["--transport", "stdio"]\n\n' "$i" "$fixture")"$'\n'
done
gateway gw-idle "$body"
sleep "$IDLE_SECS"
rss_kb="$(awk '/^VmRSS:/ {print $2}' "/proc/$PID/status")"
printf '{"label":"idle-rss-10-stdio-backends","rss_kb":%s}\n' "$rss_kb" >>"$out"

# --- report ---------------------------------------------------------------------------------
say "raw results: $out"
python3 - "$out" "$(nproc)" "$DURATION" "$WARMUP" "$ROUNDS" "$CLIENT" <<'EOF'
import json, sys

path, cores, duration, warmup, rounds, client = sys.argv[1:]
rows = [json.loads(line) for line in open(path) if line.strip()]
rss_kb = next(r["rss_kb"] for r in rows if "rss_kb" in r)
runs = {}
for r in rows:
    if "concurrency" in r:
        runs.setdefault((r["label"], r["concurrency"]), []).append(r)

def median_run(runs_):
    # The run whose calls/s is the median (the lower middle one for an even count).
    ordered = sorted(runs_, key=lambda r: r["calls_per_s"])
    return ordered[(len(ordered) - 1) // 2]

point = {key: median_run(v) for key, v in runs.items()}
labels = list(dict.fromkeys(label for label, _ in runs))
levels = sorted({c for _, c in runs})

print(f"\n{cores} cores, {duration} per point after {warmup} warm-up, {rounds} round(s), "
      f"{client} client, tools/call echo with {{\"message\":\"hi\"}}\n")
print("| scenario | c | calls/s | p50 ms | p90 ms | p99 ms | errors |")
print("|---|---:|---:|---:|---:|---:|---:|")
for label in labels:
    for c in levels:
        r = point.get((label, c))
        if r:
            print(f"| {label} | {c} | {r['calls_per_s']:,.0f} | {r['p50_ms']:.3f} | "
                  f"{r['p90_ms']:.3f} | {r['p99_ms']:.3f} | {r['errors']} |")
rss_mb = rss_kb * 1024 / 1e6  # VmRSS is in KiB; the target is in decimal MB
print(f"\nIdle RSS of the gateway process with 10 stdio fixture backends: {rss_mb:.1f} MB "
      f"({rss_kb} KiB)\n")

def get(label, c, field):
    r = point.get((label, c))
    return r[field] if r else None

checks = []
def check(name, value, fmt, ok):
    checks.append((name, "n/a" if value is None else fmt.format(value),
                   "n/a" if value is None else ("PASS" if ok(value) else "FAIL")))

def ratio(a, b):
    return a / b if a is not None and b else None

def diff_us(a, b):
    return (a - b) * 1000 if a is not None and b is not None else None

mf, sg = "manifold/everything", "supergateway/everything"
check("everything: throughput vs supergateway at c=8 (>= 5x)",
      ratio(get(mf, 8, "calls_per_s"), get(sg, 8, "calls_per_s")), "{:.1f}x", lambda v: v >= 5)
check("everything: throughput vs supergateway at c=64 (>= 8.5x)",
      ratio(get(mf, 64, "calls_per_s"), get(sg, 64, "calls_per_s")), "{:.1f}x", lambda v: v >= 8.5)
check("everything: p50 at c=1 (< 0.4 ms)", get(mf, 1, "p50_ms"), "{:.3f} ms", lambda v: v < 0.4)
for backend in ("fixture-stdio", "fixture-http"):
    check(f"{backend}: added p50 at c=1 (<= 50 us)",
          diff_us(get(f"manifold/{backend}", 1, "p50_ms"), get("fixture-direct", 1, "p50_ms")),
          "{:.0f} us", lambda v: v <= 50)
    check(f"{backend}: throughput vs direct at c=64 (>= 60%)",
          ratio(get(f"manifold/{backend}", 64, "calls_per_s"), get("fixture-direct", 64, "calls_per_s")),
          "{:.0%}", lambda v: v >= 0.6)
check("idle RSS, 10 stdio backends (< 15 MB)", rss_mb, "{:.1f} MB", lambda v: v < 15)

print("| target | measured | result |")
print("|---|---:|---|")
for name, value, verdict in checks:
    print(f"| {name} | {value} | {verdict} |")
errors = sum(r["errors"] for r in point.values())
if errors:
    print(f"\nWARNING: {errors} failed calls in the reported points; see the raw results.")
EOF
