#!/usr/bin/env bash
# Where an idle session's memory goes: runs the release gateway under valgrind's massif with the
# fixture over stdio, opens N sessions (default 300), each initialized and holding its GET
# stream open, takes a detailed heap snapshot, and prints the largest allocation sites per
# session. Not part of CI; figures in docs/performance.md ("Where an idle session's memory goes").
#
#   cargo build --release --bins && scripts/session-heap.sh [N]
set -euo pipefail
n="${1:-300}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="$root/target/release"
work="$(mktemp -d -t manifold-heap.XXXXXX)"
trap 'kill -TERM -- "-$vpid" 2>/dev/null || true; rm -rf "$work"' EXIT
command -v valgrind >/dev/null || { echo "session-heap: needs valgrind (apt-get install valgrind)" >&2; exit 1; }
port="$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')"
printf '[server]\nmax_connections = %d\n\n[limits]\nmax_sessions = %d\n\n[backends.fx]\ntransport = "stdio"\ncommand = "%s"\nargs = ["--transport", "stdio"]\n' \
    "$((n + 64))" "$((n + 16))" "$bin/manifold-fixture" >"$work/fx.toml"
setsid valgrind --tool=massif --threshold=0.5 --massif-out-file="$work/massif.out" \
    "$bin/manifold" serve --config "$work/fx.toml" --listen "127.0.0.1:$port" \
    >"$work/gw.out" 2>"$work/gw.err" </dev/null &
vpid=$!
for _ in $(seq 300); do
    grep -q listening "$work/gw.out" 2>/dev/null && break
    sleep 0.2
done
python3 - "$port" "$n" <<'PY' &
import asyncio, json, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
H = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
async def send(method, headers, body=b""):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    w.write(f"{method} /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {len(body)}\r\n{head}\r\n".encode() + body)
    await w.drain()
    return r, w, (await r.readuntil(b"\r\n\r\n")).decode()
async def session():
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "idle", "version": "1"}}}
    _, w, head = await send("POST", H, json.dumps(init).encode())
    sid = next(l.split(":", 1)[1].strip() for l in head.split("\r\n") if l.lower().startswith("mcp-session-id"))
    w.close()
    h = dict(H, **{"Mcp-Session-Id": sid, "MCP-Protocol-Version": "2025-06-18"})
    _, w, _ = await send("POST", h, json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}).encode())
    w.close()
    return await send("GET", {"Accept": "text/event-stream", "Mcp-Session-Id": sid, "MCP-Protocol-Version": "2025-06-18"})
async def main():
    held = [await session() for _ in range(n)]
    print(f"session-heap: {len(held)} idle sessions open", file=sys.stderr, flush=True)
    await asyncio.sleep(3600)
asyncio.run(main())
PY
client=$!
sleep $((20 + n / 10))
vgdb --pid="$vpid" detailed_snapshot "$work/snap.txt" >/dev/null
kill "$client" 2>/dev/null || true
python3 - "$work/snap.txt" "$n" <<'PY'
import re, sys
path, n = sys.argv[1], int(sys.argv[2])
nodes = []
for line in open(path):
    m = re.match(r"^( *)n\d+: (\d+) (.*)$", line.rstrip("\n"))
    if m:
        nodes.append((len(m.group(1)), int(m.group(2)), m.group(3)))
print(f"heap at {n} idle sessions: {nodes[0][1] / 1e6:.1f} MB; largest sites, bytes per session:")
pattern = r"(rmcp::[\w:]+|manifold::[\w:]+|hyper::[\w:]+|tokio::sync::mpsc::[\w:]+)"
for i, (depth, size, _) in enumerate(nodes):
    if depth != 1 or size < n * 700:
        continue
    chain, j, level = [], i + 1, 1
    while j < len(nodes) and nodes[j][0] > 1:
        if nodes[j][0] == level + 1:
            level = nodes[j][0]
            m = re.search(pattern, nodes[j][2])
            if m and (not chain or chain[-1] != m.group(1)):
                chain.append(m.group(1))
        j += 1
    print(f"{size / n:9.0f}  " + " <- ".join(chain[:5]))
PY
