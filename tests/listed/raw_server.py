#!/usr/bin/env python3
"""A minimal MCP server that lists items with fields rmcp's typed model does
not know (a 2025-11-25 tool's `execution`, vendor fields), written as raw
JSON so nothing in between drops them. Used by tests/listed_fields.rs.

    raw_server.py stdio              JSON-RPC lines on stdin/stdout
    raw_server.py http [--json]      streamable HTTP (SSE answers, or JSON)
    raw_server.py sse                the legacy HTTP+SSE transport

The HTTP modes print `listening URL` once they accept connections.
"""
import json
import queue
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOOL_PAGES = [
    [{"name": "slow", "description": "runs long", "inputSchema": {"type": "object"},
      "execution": {"taskSupport": "optional"}, "x-vendor": {"tier": 2}}],
    [{"name": "plain", "inputSchema": {"type": "object"}, "x-page": 2},
     {"name": "bare", "inputSchema": {"type": "object"}}],
]
LISTS = {
    "prompts/list": {"prompts": [{"name": "greet", "x-vendor": "prompt"}]},
    "resources/list": {"resources": [{"uri": "mem://a", "name": "a", "x-vendor": "resource"}]},
    "resources/templates/list": {
        "resourceTemplates": [{"uriTemplate": "mem://{x}", "name": "t", "x-vendor": "template"}]
    },
}


def answer(message):
    """The reply to one message, or None for notifications and replies."""
    if "method" not in message or "id" not in message:
        return None
    method, params = message["method"], message.get("params") or {}
    if method == "initialize":
        result = {
            "protocolVersion": params.get("protocolVersion", "2025-06-18"),
            "capabilities": {"tools": {}, "prompts": {}, "resources": {}},
            "serverInfo": {"name": "raw-lister", "version": "1"},
        }
    elif method == "tools/list":
        page = int(params.get("cursor") or 0)
        result = {"tools": TOOL_PAGES[page]}
        if page + 1 < len(TOOL_PAGES):
            result["nextCursor"] = str(page + 1)
    elif method in LISTS:
        result = LISTS[method]
    elif method == "tools/call":
        result = {"content": [{"type": "text", "text": "called " + params.get("name", "")}]}
    elif method == "ping":
        result = {}
    else:
        return {"jsonrpc": "2.0", "id": message["id"],
                "error": {"code": -32601, "message": "method not found: " + method}}
    return {"jsonrpc": "2.0", "id": message["id"], "result": result}


def stdio():
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        reply = answer(json.loads(line))
        if reply is not None:
            sys.stdout.write(json.dumps(reply) + "\n")
            sys.stdout.flush()


class Streamable(BaseHTTPRequestHandler):
    json_answers = False

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        reply = answer(json.loads(body))
        if reply is None:
            self.send_response(202)
            self.send_header("content-length", "0")
            self.end_headers()
            return
        data = json.dumps(reply).encode()
        self.send_response(200)
        if self.json_answers:
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        else:
            event = b"event: message\ndata: " + data + b"\n\n"
            self.send_header("content-type", "text/event-stream")
            self.send_header("content-length", str(len(event)))
            self.end_headers()
            self.wfile.write(event)

    def do_GET(self):
        self.send_response(405)
        self.send_header("content-length", "0")
        self.end_headers()

    def do_DELETE(self):
        self.do_GET()


class Legacy(BaseHTTPRequestHandler):
    """One outbox per event stream, named in the endpoint it announces."""
    outboxes = {}
    lock = threading.Lock()

    def log_message(self, *args):
        pass

    def do_GET(self):
        outbox = queue.Queue()
        with self.lock:
            sid = str(len(self.outboxes))
            self.outboxes[sid] = outbox
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.end_headers()
        self.wfile.write(b"event: endpoint\ndata: /messages?sid=" + sid.encode() + b"\n\n")
        self.wfile.flush()
        while True:
            reply = outbox.get()
            self.wfile.write(b"event: message\ndata: " + json.dumps(reply).encode() + b"\n\n")
            self.wfile.flush()

    def do_POST(self):
        sid = self.path.partition("sid=")[2]
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        reply = answer(json.loads(body))
        with self.lock:
            outbox = self.outboxes.get(sid)
        self.send_response(202 if outbox else 404)
        self.send_header("content-length", "0")
        self.end_headers()
        if reply is not None and outbox:
            outbox.put(reply)


def serve(handler, path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    print(f"listening http://127.0.0.1:{server.server_address[1]}{path}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else "stdio"
    if mode == "stdio":
        stdio()
    elif mode == "http":
        Streamable.json_answers = "--json" in sys.argv
        serve(Streamable, "/mcp")
    elif mode == "sse":
        serve(Legacy, "/sse")
    else:
        sys.exit("usage: raw_server.py stdio|http [--json]|sse")
