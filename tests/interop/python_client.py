"""Drives a Manifold gateway with the official MCP Python SDK (`mcp` on PyPI).

Usage: python_client.py URL

The gateway must mount the manifold fixture as backend `fx`. The script connects twice:

- `legacy`: a `ClientSession` over `streamable_http_client`, with the classic `initialize`
  handshake, then lists tools, calls `fx__echo`, calls an unknown tool, lists and reads a
  resource and gets the prompt `fx__greet`;
- `auto`: the SDK's high-level `Client(URL)` with its default connect mode (probe
  `server/discover`, fall back to `initialize`; the gateway answers the probe, so this speaks
  2026-07-28), which is how most Python users connect, and calls `fx__echo` once.

It prints one JSON object on stdout describing what it observed; tests/interop.rs asserts on
it. Each step records its failure instead of aborting, so one broken step does not hide the
others. The whole run is bounded by STEP_TIMEOUT per step.
"""

import json
import sys
import traceback

import anyio
from mcp import ClientSession
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import PaginatedRequestParams

STEP_TIMEOUT = 20


def text_of(content):
    """The text of the first text content block, or None."""
    for block in content or []:
        if getattr(block, "type", None) == "text":
            return block.text
    return None


async def step(out, key, fn):
    """Runs `fn()`, storing its value under `key`, or `{"exception": ...}` if it raised."""
    try:
        with anyio.fail_after(STEP_TIMEOUT):
            out[key] = await fn()
    except Exception as e:  # noqa: BLE001 - the test wants to see every failure
        out[key] = {"exception": f"{type(e).__name__}: {e}"}


async def legacy(url, out):
    async with streamable_http_client(url) as (read, write):
        async with ClientSession(read, write) as session:

            async def initialize():
                r = await session.initialize()
                return {
                    "server_name": r.server_info.name if r.server_info else None,
                    "protocol_version": r.protocol_version,
                    "has_tools": r.capabilities.tools is not None,
                    "has_prompts": r.capabilities.prompts is not None,
                    "has_resources": r.capabilities.resources is not None,
                }

            await step(out, "initialize", initialize)

            async def tools():
                names, cursor = [], None
                while True:
                    params = None if cursor is None else PaginatedRequestParams(cursor=cursor)
                    page = await session.list_tools(params=params)
                    names += [t.name for t in page.tools]
                    cursor = page.next_cursor
                    if not cursor:
                        return names

            await step(out, "tools", tools)

            async def echo():
                r = await session.call_tool("fx__echo", {"message": "from python"})
                return {"is_error": bool(r.is_error), "text": text_of(r.content)}

            await step(out, "echo", echo)

            async def unknown():
                # The gateway answers an unknown tool with a JSON-RPC error, which the SDK
                # raises; a tool-level error result would come back as is_error instead.
                try:
                    r = await session.call_tool("fx__no_such_tool", {})
                except Exception as e:  # noqa: BLE001
                    err = getattr(e, "error", None)
                    return {
                        "raised": True,
                        "code": getattr(err, "code", None),
                        "message": getattr(err, "message", str(e)),
                    }
                return {"raised": False, "is_error": bool(r.is_error), "text": text_of(r.content)}

            await step(out, "unknown_tool", unknown)

            async def resources():
                r = await session.list_resources()
                return [str(x.uri) for x in r.resources]

            await step(out, "resources", resources)

            async def read():
                r = await session.read_resource("fx+fixture://info")
                return [
                    {"uri": str(c.uri), "text": getattr(c, "text", None)} for c in r.contents
                ]

            await step(out, "read", read)

            async def templates():
                r = await session.list_resource_templates()
                return [t.uri_template for t in r.resource_templates]

            await step(out, "templates", templates)

            async def prompt():
                r = await session.get_prompt("fx__greet", {"name": "Grace"})
                return [
                    {"role": m.role, "text": getattr(m.content, "text", None)}
                    for m in r.messages
                ]

            await step(out, "prompt", prompt)


async def auto(url, out):
    async with Client(url) as client:
        out["protocol_version"] = client.protocol_version
        r = await client.call_tool("fx__echo", {"message": "auto mode"})
        out["echo"] = {"is_error": bool(r.is_error), "text": text_of(r.content)}


async def main(url):
    summary = {"legacy": {}, "auto": {}}
    for key, fn in (("legacy", legacy), ("auto", auto)):
        try:
            with anyio.fail_after(STEP_TIMEOUT * 12):
                await fn(url, summary[key])
        except BaseException as e:  # noqa: BLE001 - includes ExceptionGroup from task groups
            summary[key]["session_error"] = "".join(
                traceback.format_exception_only(type(e), e)
            ).strip()
    print(json.dumps(summary, indent=2, sort_keys=True))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python_client.py URL")
    anyio.run(main, sys.argv[1])
