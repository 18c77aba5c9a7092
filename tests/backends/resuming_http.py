"""A streamable-HTTP MCP backend (standard library only) that does two
things real servers do and the fixture does not:

- `closes_stream` answers with an SSE stream that ends after a priming event
  (an id and `retry:`, no data), as a server that polls does (SEP-1699);
  the answer is kept and sent on a GET that names that event in
  `Last-Event-ID`;
- `forget_session` answers, then forgets the session: the next request on
  it gets 404, as from a server that restarted or expired it.

`echo` answers its `message`. The session's requests are counted in
`/calls` (how many `tools/call` each tool got), so a test can tell a call
run once from one run twice. Prints `listening URL` when ready.
"""

import json
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
SESSIONS = set()
KEPT = {}  # event id -> the answer kept for it
CALLS = {}  # tool name -> how many calls it got

TOOLS = [
    {"name": name, "description": text, "inputSchema": {"type": "object"}}
    for name, text in [
        ("closes_stream", "ends its stream before answering; the answer comes on resume"),
        ("forget_session", "answers, then forgets the session"),
        ("echo", "answers its message"),
    ]
]


def text_result(text):
    return {"content": [{"type": "text", "text": text}]}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send_json(self, status, body, headers=()):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def send_empty(self, status):
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def send_events(self, events):
        """An SSE stream of `events` (id, retry, data), then the end of it."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        for event_id, retry, data in events:
            chunk = f"id: {event_id}\n"
            if retry is not None:
                chunk += f"retry: {retry}\n"
            chunk += f"data: {data}\n\n"
            self.wfile.write(chunk.encode())
        self.wfile.flush()
        self.close_connection = True

    def session_known(self):
        return self.headers.get("mcp-session-id") in SESSIONS

    def do_GET(self):
        if self.path == "/calls":
            with LOCK:
                return self.send_json(200, CALLS)
        last = self.headers.get("last-event-id")
        with LOCK:
            kept = KEPT.pop(last, None) if last else None
        if not self.session_known():
            return self.send_empty(404)
        if kept is None:
            return self.send_empty(405)  # no standalone stream here
        self.send_events([(str(uuid.uuid4()), None, json.dumps(kept))])

    def do_DELETE(self):
        with LOCK:
            SESSIONS.discard(self.headers.get("mcp-session-id"))
        self.send_empty(200)

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        message = json.loads(self.rfile.read(length))
        method = message.get("method")
        if method == "initialize":
            session = str(uuid.uuid4())
            with LOCK:
                SESSIONS.add(session)
            version = message["params"].get("protocolVersion", "2025-11-25")
            result = {
                "protocolVersion": version,
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "resuming", "version": "1"},
            }
            return self.send_json(
                200,
                {"jsonrpc": "2.0", "id": message["id"], "result": result},
                [("Mcp-Session-Id", session)],
            )
        if not self.session_known():
            return self.send_empty(404)
        if "id" not in message or method is None:
            return self.send_empty(202)  # a notification or an answer
        answer = lambda result: {"jsonrpc": "2.0", "id": message["id"], "result": result}
        if method == "ping":
            return self.send_json(200, answer({}))
        if method == "tools/list":
            return self.send_json(200, answer({"tools": TOOLS}))
        if method != "tools/call":
            error = {"code": -32601, "message": f"no method {method}"}
            return self.send_json(200, {"jsonrpc": "2.0", "id": message["id"], "error": error})
        name = message["params"]["name"]
        with LOCK:
            CALLS[name] = CALLS.get(name, 0) + 1
        if name == "closes_stream":
            priming = str(uuid.uuid4())
            with LOCK:
                KEPT[priming] = answer(text_result("resumed"))
            return self.send_events([(priming, 50, "")])
        if name == "forget_session":
            with LOCK:
                SESSIONS.discard(self.headers.get("mcp-session-id"))
            return self.send_json(200, answer(text_result("forgotten")))
        arguments = message["params"].get("arguments") or {}
        return self.send_json(200, answer(text_result(str(arguments.get("message")))))


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(f"listening http://127.0.0.1:{server.server_port}/mcp", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
