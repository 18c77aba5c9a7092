#!/usr/bin/env bash
# Reproduces every figure in docs/performance.md with one command:
#
#   scripts/bench.sh                        # everything, about 25 minutes on 2 cores
#   BENCH_PARTS=calls scripts/bench.sh      # only the side-by-side call table
#   BENCH_DURATION=2s BENCH_ROUNDS=1 scripts/bench.sh   # a quick look, not for publishing
#
# Parts (BENCH_PARTS, comma-separated; all by default):
#   calls      tools/call echo, closed loop, c = 1, 8, 64, interleaved rounds, with these
#              scenarios (all on 127.0.0.1, driven by examples/loadgen.rs):
#                fixture-direct            manifold-fixture over streamable HTTP, no gateway
#                manifold/fixture-stdio    Manifold -> manifold-fixture over stdio (fx__echo)
#                floor/fixture-stdio       the least HTTP-to-stdio relay (examples/floor_relay.rs), for reference
#                manifold/fixture-http     Manifold -> manifold-fixture over HTTP  (fxh__echo)
#                manifold/everything       Manifold -> server-everything over stdio
#                mcp-proxy/everything      the mcp-proxy crate -> the same server over stdio
#                stdio-direct/everything   a stdio driver -> server-everything, no gateway
#                                          (the ceiling of what that backend can serve)
#                supergateway/everything   supergateway (stateful) -> server-everything
#              with the gateway process's CPU time per call (loadgen --cpu-pid).
#   instr      instructions per tools/call of the gateway process under valgrind's callgrind
#              (fixture over stdio, c = 1): Manifold and the peer; reproducible on a busy machine
#   idle       idle RSS of one Manifold with 10 stdio fixture backends
#   sessions   gateway RSS growth per idle session, 1,000 and 10,000 sessions, each with its
#              GET stream open (examples/coordinator_bench.rs --memory-only)
#   messaging  send_message/s with 8 senders on the memory store (examples/messaging_bench.rs)
#   lists      one list change to 1,000 sessions, first to last delivery (coordinator_bench)
#   growth     how cost grows: tools/list p50 and gateway RSS with 1/10/100 backends and
#              100/1,000/10,000 tools; calls/s with 1/10/100 sessions; a PNG plot
#
# The call scenarios are interleaved: within a round every scenario runs once at a level
# before the next level, and BENCH_ROUNDS repeats the sweep, so drift on the machine hits all
# of them alike; each point reports the round with the median calls/s. Every row records the
# 1-minute load average when it was measured: figures taken on a busy machine say so.
#
# Setup (not in CI; each step is skipped when its result is already there):
#   - scripts/install-test-deps.sh (server-everything, supergateway);
#   - the peer: `cargo install mcp-proxy --version $BENCH_PEER_VERSION --locked` into the
#     git-ignored .bench-deps/ (compiles for several minutes the first time);
#   - matplotlib from PyPI into the git-ignored venv .bench-deps/venv (for the plot);
#   - the release binaries and examples; they are copied to a temp dir, so a build elsewhere
#     cannot replace them during the run.
#
# Knobs (environment): BENCH_PARTS, BENCH_DURATION (5s), BENCH_WARMUP (1s),
# BENCH_CONCURRENCY (1,8,64), BENCH_ROUNDS (3), BENCH_IDLE_SECS (5), BENCH_LOADGEN_THREADS (1),
# BENCH_CLIENT (rmcp; `raw` is loadgen's bare HTTP client), BENCH_PEER_VERSION (0.6.0, the
# newest published), BENCH_SUPERGATEWAY (1; 0 leaves it out), BENCH_BASE_BIN (a directory
# holding another build's `manifold`: adds manifold-base/everything, for before/after),
# BENCH_ONLY (a regex: run only the call scenarios whose label matches), BENCH_NO_BUILD (1: use
# the release binaries already built), BENCH_PROFILE (release; `dist` measures the whole-program
# optimized build of Cargo.toml's [profile.dist]), BENCH_OUT (raw JSON lines;
# target/bench-results.jsonl), BENCH_PLOT (target/bench-growth.png).
set -euo pipefail

PROFILE="${BENCH_PROFILE:-release}"
PARTS=",${BENCH_PARTS:-calls,instr,idle,sessions,messaging,lists,growth},"
DURATION="${BENCH_DURATION:-5s}"
WARMUP="${BENCH_WARMUP:-1s}"
CONCURRENCY="${BENCH_CONCURRENCY:-1,8,64}"
ROUNDS="${BENCH_ROUNDS:-3}"
IDLE_SECS="${BENCH_IDLE_SECS:-5}"
LOADGEN_THREADS="${BENCH_LOADGEN_THREADS:-1}"
CLIENT="${BENCH_CLIENT:-rmcp}"
PEER_VERSION="${BENCH_PEER_VERSION:-0.6.0}"
SUPERGATEWAY="${BENCH_SUPERGATEWAY:-1}"
ARGS='{"message":"hi"}'

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
work="$(mktemp -d -t manifold-bench.XXXXXX)"
out="${BENCH_OUT:-$root/target/bench-results.jsonl}"
plot="${BENCH_PLOT:-$root/target/bench-growth.png}"
deps="$root/.bench-deps"
mkdir -p "$(dirname "$out")" "$deps"
: >"$out"

say() { printf 'bench: %s\n' "$*" >&2; }
die() { printf 'bench: ERROR: %s\n' "$*" >&2; exit 1; }
part() { [[ "$PARTS" == *",$1,"* ]]; }

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

# stop PID : stops one process group started by `start`.
stop() {
    kill -TERM -- "-$1" 2>/dev/null || true
    local i
    for ((i = 0; i < 50; i++)); do
        kill -0 "$1" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL -- "-$1" 2>/dev/null || true
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

# wait_port NAME PORT : for servers that print no ready line (supergateway, mcp-proxy).
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

# wait_ready URL : until the gateway's /readyz says every backend made its first attempt.
wait_ready() {
    local base="${1%/mcp}" i
    for ((i = 0; i < 1200; i++)); do
        if curl -fsS -o /dev/null "$base/readyz" 2>/dev/null; then
            return
        fi
        sleep 0.1
    done
    die "gateway at $base is not ready within 120 s"
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
status_kib() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; } # PID FIELD
load1() { cut -d' ' -f1 /proc/loadavg; }

# gateway NAME CONFIG_BODY : writes a config, starts `manifold serve` on port 0, sets URL and PID.
gateway() {
    local name="$1" body="$2"
    printf '[server]\nlisten = "127.0.0.1:0"\n\n%s\n' "$body" >"$work/$name.toml"
    start "$name" "$bin/manifold" serve --config "$work/$name.toml" --listen 127.0.0.1:0
    wait_listening "$name"
}

stdio_backend() { # NAME COMMAND ARGS-TOML
    printf '[backends.%s]\ntransport = "stdio"\ncommand = "%s"\nargs = %s\n\n' "$1" "$2" "$3"
}

# --- setup ----------------------------------------------------------------------------------
# The bench needs only the npm servers of the test dependencies; the full install (which also
# builds tansu for the audit tests) runs only when they are missing.
if [[ ! -f .test-deps/node_modules/@modelcontextprotocol/server-everything/dist/index.js ||
      ! -f .test-deps/node_modules/supergateway/dist/index.js ]]; then
    scripts/install-test-deps.sh >&2
fi
peer="$deps/mcp-proxy-$PEER_VERSION/bin/mcp-proxy"
if part calls && [[ ! -x "$peer" ]]; then
    say "installing the peer, mcp-proxy $PEER_VERSION, into $deps (compiles once, several minutes)"
    # Its own temporary target dir: the peer's dependencies are not ours.
    env -u CARGO_TARGET_DIR cargo install mcp-proxy --version "$PEER_VERSION" --locked \
        --root "$deps/mcp-proxy-$PEER_VERSION" >&2
fi
python="$deps/venv/bin/python"
if part growth && ! "$python" -c 'import matplotlib' 2>/dev/null; then
    say "installing matplotlib into $deps/venv"
    python3 -m venv "$deps/venv" >&2
    "$python" -m pip install --quiet matplotlib >&2
fi
if [[ "${BENCH_NO_BUILD:-0}" != 1 ]]; then
    say "building release binaries and the benchmark examples"
    cargo build --profile "$PROFILE" --bins --example loadgen --example coordinator_bench --example messaging_bench \
        --example floor_relay >&2
fi
built="${CARGO_TARGET_DIR:-$root/target}/$PROFILE"
bin="$work/bin"
mkdir -p "$bin"
cp "$built/manifold" "$built/manifold-fixture" "$built/examples/loadgen" \
    "$built/examples/coordinator_bench" "$built/examples/messaging_bench" \
    "$built/examples/floor_relay" "$bin/"
loadgen="$bin/loadgen"
fixture="$bin/manifold-fixture"
everything="$root/.test-deps/node_modules/@modelcontextprotocol/server-everything/dist/index.js"
supergateway="$root/.test-deps/node_modules/supergateway/dist/index.js"
say "$(nproc) cores; load average before the run: $(cut -d' ' -f1-3 /proc/loadavg)"

# --- calls: the interleaved side-by-side table ---------------------------------------------
run_calls() {
    local labels=() label c round
    declare -A url tool cpu stdio
    start fixture "$fixture" --transport http --listen 127.0.0.1:0
    wait_listening fixture
    local fixture_url="$URL"
    labels+=("fixture-direct"); url[fixture-direct]="$URL"; tool[fixture-direct]="echo"

    gateway gw-fx-stdio "$(stdio_backend fx "$fixture" '["--transport", "stdio"]')"
    label=manifold/fixture-stdio; labels+=("$label"); url[$label]="$URL"; tool[$label]="fx__echo"; cpu[$label]="$PID"

    # The least relay from HTTP to the same fixture over stdio (examples/floor_relay.rs): what
    # the extra process hop costs on this machine, apart from any gateway's work.
    start floor "$bin/floor_relay" --listen 127.0.0.1:0 -- "$fixture" --transport stdio
    wait_listening floor
    label=floor/fixture-stdio; labels+=("$label"); url[$label]="$URL"; tool[$label]="echo"; cpu[$label]="$PID"

    gateway gw-fx-http "$(printf '[backends.fxh]\ntransport = "http"\nurl = "%s"\n' "$fixture_url")"
    label=manifold/fixture-http; labels+=("$label"); url[$label]="$URL"; tool[$label]="fxh__echo"; cpu[$label]="$PID"

    gateway gw-everything "$(stdio_backend everything node "[\"$everything\", \"stdio\"]")"
    label=manifold/everything; labels+=("$label"); url[$label]="$URL"; tool[$label]="everything__echo"; cpu[$label]="$PID"
    wait_ready "$URL"

    if [[ -n "${BENCH_BASE_BIN:-}" ]]; then
        # Another build of Manifold (a directory with its `manifold`), for before/after.
        printf '[server]\nlisten = "127.0.0.1:0"\n\n%s\n' "$(stdio_backend everything node "[\"$everything\", \"stdio\"]")" >"$work/gw-base.toml"
        start gw-base "$BENCH_BASE_BIN/manifold" serve --config "$work/gw-base.toml" --listen 127.0.0.1:0
        wait_listening gw-base
        wait_ready "$URL"
        label=manifold-base/everything; labels+=("$label"); url[$label]="$URL"; tool[$label]="everything__echo"; cpu[$label]="$PID"
    fi

    # The peer, in its own documented shape: one TOML file, endpoint at `/`, names `backend/tool`,
    # default features (as `cargo install` builds it), default runtime (one worker per core).
    local port
    port="$(free_port)"
    cat >"$work/mcp-proxy.toml" <<EOF
[proxy]
name = "bench"
separator = "/"

[proxy.listen]
host = "127.0.0.1"
port = $port

# Its documented default log level; without this section 0.6.0 logs every call at debug
# (its ObservabilityConfig derives Default, which leaves log_level empty).
[observability]
log_level = "info"

[[backends]]
name = "everything"
transport = "stdio"
command = "node"
args = ["$everything", "stdio"]
EOF
    start mcp-proxy "$peer" --config "$work/mcp-proxy.toml"
    wait_port mcp-proxy "$port"
    label=mcp-proxy/everything; labels+=("$label"); url[$label]="http://127.0.0.1:$port/"; tool[$label]="everything/echo"; cpu[$label]="$PID"

    label=stdio-direct/everything; labels+=("$label"); stdio[$label]="node $everything stdio"; tool[$label]="echo"

    if [[ "$SUPERGATEWAY" == 1 ]]; then
        # supergateway's stateless mode starts a new server-everything child for every POST
        # (about 2 calls/s here), so we compare against its stateful mode: one child per session.
        port="$(free_port)"
        start supergateway node "$supergateway" --stdio "node $everything stdio" \
            --outputTransport streamableHttp --stateful --port "$port" --logLevel none
        wait_port supergateway "$port"
        label=supergateway/everything; labels+=("$label"); url[$label]="http://127.0.0.1:$port/mcp"; tool[$label]="echo"; cpu[$label]="$PID"
    fi

    IFS=',' read -r -a levels <<<"$CONCURRENCY"
    for ((round = 1; round <= ROUNDS; round++)); do
        for c in "${levels[@]}"; do
            for label in "${labels[@]}"; do
                [[ -n "${BENCH_ONLY:-}" && ! "$label" =~ $BENCH_ONLY ]] && continue
                say "calls: round $round/$ROUNDS  c=$c  $label  (load $(load1))"
                local target=(--url "${url[$label]:-}")
                [[ -n "${stdio[$label]:-}" ]] && target=(--stdio "${stdio[$label]}")
                local pid_arg=()
                [[ -n "${cpu[$label]:-}" ]] && pid_arg=(--cpu-pid "${cpu[$label]}")
                "$loadgen" "${target[@]}" "${pid_arg[@]}" --tool "${tool[$label]}" --args "$ARGS" \
                    --concurrency "$c" --duration "$DURATION" --warmup "$WARMUP" \
                    --threads "$LOADGEN_THREADS" --client "$CLIENT" --label "$label" --json >>"$out"
            done
        done
    done
    local p
    for p in "${cpu[@]}"; do stop "$p"; done
}

# --- idle: RSS with 10 stdio backends -------------------------------------------------------
run_idle() {
    local body="" i
    for i in $(seq 0 9); do
        body+="$(stdio_backend "fx$i" "$fixture" '["--transport", "stdio"]')"$'\n'
    done
    gateway gw-idle "$body"
    wait_ready "$URL"
    sleep "$IDLE_SECS"
    # Besides VmRSS, its two parts: anonymous memory (heap, stacks: the gateway's own) and
    # file-backed pages (the binary's code and data as mapped, shared with any other process
    # running the same file and reclaimable by the kernel).
    printf '{"label":"idle-rss-10-stdio-backends","rss_kb":%s,"anon_kb":%s,"file_kb":%s,"load1":%s}\n' \
        "$(rss_kib "$PID")" "$(status_kib "$PID" RssAnon)" "$(status_kib "$PID" RssFile)" "$(load1)" >>"$out"
    stop "$PID"
}

# --- sessions, lists: coordinator_bench -----------------------------------------------------
run_sessions() {
    local n
    for n in 1000 10000; do
        say "sessions: $n idle sessions (load $(load1))"
        "$bin/coordinator_bench" --bin-dir "$bin" --sessions "$n" --memory-only --json >>"$out"
    done
}

run_lists() {
    say "lists: one list change to 1,000 sessions (load $(load1))"
    "$bin/coordinator_bench" --bin-dir "$bin" --sessions 1000 --progress 0 --json >>"$out"
}

# --- messaging ------------------------------------------------------------------------------
run_messaging() {
    say "messaging: send_message/s with 8 senders, memory store (load $(load1))"
    "$bin/messaging_bench" --bin-dir "$bin" --store memory --workers 8 --seconds 5 \
        --round-trips 500 --json >>"$out"
}

# --- growth: lists and RSS vs backends x tools, calls/s vs sessions -------------------------
run_growth() {
    local backends tools per body i
    for backends in 1 10 100; do
        for tools in 100 1000 10000; do
            per=$((tools / backends))
            body=""
            for ((i = 0; i < backends; i++)); do
                body+="$(stdio_backend "b$i" "$fixture" "[\"--transport\", \"stdio\", \"--extra-tools\", \"$per\", \"--only-extra-tools\"]")"$'\n'
            done
            # 100 fixtures start at once on 2 cores: give them time.
            gateway "gw-grow-$backends-$tools" $'connect_timeout = "120s"\n\n'"$body"
            wait_ready "$URL"
            sleep 2
            say "growth: $backends backends, $tools tools (load $(load1))"
            "$loadgen" --url "$URL" --method tools/list --concurrency 1 --duration "$DURATION" \
                --warmup "$WARMUP" --threads "$LOADGEN_THREADS" --label "growth-list" --json \
                | python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); r.update(backends=int(sys.argv[1]), tools=int(sys.argv[2]), rss_kb=int(sys.argv[3])); print(json.dumps(r))' \
                    "$backends" "$tools" "$(rss_kib "$PID")" >>"$out"
            stop "$PID"
        done
    done
    gateway gw-grow-sessions "$(stdio_backend fx "$fixture" '["--transport", "stdio"]')"
    wait_ready "$URL"
    local n
    for n in 1 10 100; do
        say "growth: calls/s with $n sessions (load $(load1))"
        "$loadgen" --url "$URL" --tool fx__echo --args "$ARGS" --concurrency "$n" \
            --workers-per-session 1 --cpu-pid "$PID" --duration "$DURATION" --warmup "$WARMUP" \
            --threads "$LOADGEN_THREADS" --label "growth-sessions" --json >>"$out"
    done
    stop "$PID"
}

# --- instr: instructions per call under callgrind (reproducible on a busy machine) ----------
# The gateway runs under valgrind's callgrind with the fixture over stdio; after a warm-up the
# counters are zeroed, loadgen makes calls for a while at c = 1, and the dump's total divided by
# the calls is the gateway's instructions per call (all its threads). Manifold, its base build
# (BENCH_BASE_BIN) and the peer, one after the other.
instr_one() { # LABEL PORT URL-PATH TOOL CMD...
    local label="$1" port="$2" path="$3" tool="$4"
    shift 4
    start "cg-$label" valgrind --tool=callgrind --callgrind-out-file="$work/cg-$label.%p" "$@"
    local vpid="$PID"
    wait_port "cg-$label" "$port"
    local url="http://127.0.0.1:$port$path" i
    # Under callgrind the backend connects slowly: warm up once its tool answers.
    for ((i = 0; i < 120; i++)); do
        "$loadgen" --url "$url" --tool "$tool" --args "$ARGS" --concurrency 1 --duration 3s \
            --warmup 0s --json >/dev/null 2>&1 && break
        sleep 1
    done
    callgrind_control -z "$vpid" >/dev/null
    "$loadgen" --url "$url" --tool "$tool" --args "$ARGS" --concurrency 1 --duration 10s --warmup 0s \
        --label "instr/$label" --json >"$work/cg-$label.json"
    callgrind_control -d "$vpid" >/dev/null
    sleep 1
    local ir
    ir="$(cat "$work"/cg-"$label".*.1 | awk '/^summary:/ {print $2}')"
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); r["instructions"]=int(sys.argv[2]); r["instr_per_call"]=int(sys.argv[2])/max(r["calls"],1); print(json.dumps(r))' \
        "$work/cg-$label.json" "$ir" >>"$out"
    stop "$vpid"
}

run_instr() {
    command -v valgrind >/dev/null || { say "instr: no valgrind (apt-get install valgrind): skipped"; return; }
    local fx_toml="$work/instr-fx.toml" port
    printf '[server]\nlisten = "127.0.0.1:0"\n\n%s\n' "$(stdio_backend fx "$fixture" '["--transport", "stdio"]')" >"$fx_toml"
    say "instr: Manifold under callgrind (load $(load1))"
    port="$(free_port)"
    instr_one manifold "$port" /mcp fx__echo "$bin/manifold" serve --config "$fx_toml" --listen "127.0.0.1:$port"
    if [[ -n "${BENCH_BASE_BIN:-}" ]]; then
        say "instr: the base build under callgrind"
        port="$(free_port)"
        instr_one manifold-base "$port" /mcp fx__echo "$BENCH_BASE_BIN/manifold" serve --config "$fx_toml" --listen "127.0.0.1:$port"
    fi
    if [[ -x "$peer" ]]; then
        say "instr: the peer under callgrind"
        port="$(free_port)"
        cat >"$work/instr-peer.toml" <<EOF
[proxy]
name = "bench"
separator = "/"

[proxy.listen]
host = "127.0.0.1"
port = $port

[observability]
log_level = "info"

[[backends]]
name = "fx"
transport = "stdio"
command = "$fixture"
args = ["--transport", "stdio"]
EOF
        instr_one mcp-proxy "$port" / fx/echo "$peer" --config "$work/instr-peer.toml"
    fi
}

part calls && run_calls
part instr && run_instr
part idle && run_idle
part sessions && run_sessions
part lists && run_lists
part messaging && run_messaging
part growth && run_growth

# --- report ---------------------------------------------------------------------------------
say "raw results: $out"
plot_python=python3
[[ -x "$python" ]] && plot_python="$python"
"$plot_python" scripts/bench_report.py "$out" --cores "$(nproc)" --duration "$DURATION" \
    --warmup "$WARMUP" --rounds "$ROUNDS" --client "$CLIENT" --peer "mcp-proxy $PEER_VERSION" \
    --plot "$plot"
