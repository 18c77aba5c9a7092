"""Drives a Manifold gateway with fastmcp's `Client` (PyPI `fastmcp`) over streamable HTTP.

Usage: fastmcp_client.py URL MODE...

MODE is a value of fastmcp's `Client(mode=...)`: `legacy` (the initialize handshake), `auto`
(fastmcp's default: probe `server/discover`, fall back to `initialize`) or `2026-07-28` (adopt
that version without probing). The gateway must mount the manifold fixture as backend `fx`.
For each mode the script connects once with a sampling, an elicitation, a roots and a progress
handler, then:

- lists tools and calls `fx__echo` and `fx__fail` (a tool error);
- calls `fx__progress` (3 steps) and records what the progress handler was given;
- calls `fx__sample`, whose backend asks the client to sample: the sampling handler answers
  `sampled: <prompt>`, and the tool returns that text;
- calls `fx__elicit`, whose backend asks for a form: the elicitation handler answers
  `{"name": "fastmcp"}`, and the tool returns the elicitation result as JSON;
- calls `fx__roots`, whose backend asks for the client's roots;
- lists and reads the resource `fx+fixture://info` and gets the prompt `fx__greet`.

It prints one JSON object on stdout, keyed by mode, describing what it observed;
tests/interop_fastmcp.rs asserts on it. Each step records its failure instead of aborting, so
one broken step does not hide the others, and each is bounded by STEP_TIMEOUT.
"""

import json
import sys
import traceback

import anyio
from fastmcp import Client

STEP_TIMEOUT = 20
ROOT = "file:///tmp/fastmcp-interop-root"


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


async def drive(url, mode, out):
    asked = {"sampling": [], "elicitation": []}

    async def sampling(messages, params, context):
        prompt = " ".join(getattr(m.content, "text", "") for m in messages)
        asked["sampling"].append(prompt)
        return f"sampled: {prompt}"

    async def elicitation(message, response_type, params, context):
        asked["elicitation"].append(message)
        return {"name": "fastmcp"}

    client = Client(
        url,
        mode=mode,
        roots=[ROOT],
        sampling_handler=sampling,
        elicitation_handler=elicitation,
        timeout=STEP_TIMEOUT,
    )
    async with client:
        info = client.server_info
        out["connect"] = {
            "protocol_version": client.protocol_version,
            "server_name": info.name if info else None,
            "has_tools": bool(client.server_capabilities and client.server_capabilities.tools),
        }

        async def tools():
            return [t.name for t in await client.list_tools()]

        await step(out, "tools", tools)

        async def call(name, arguments, **kw):
            r = await client.call_tool_mcp(name, arguments, **kw)
            return {"is_error": bool(r.is_error), "text": text_of(r.content)}

        await step(out, "echo", lambda: call("fx__echo", {"message": f"fastmcp {mode}"}))
        await step(out, "fail", lambda: call("fx__fail", {}))

        async def progress():
            seen = []

            async def handler(progress, total, message):
                seen.append({"progress": progress, "total": total})

            result = await call(
                "fx__progress", {"steps": 3, "delay_ms": 10}, progress_handler=handler
            )
            return {"result": result, "notifications": seen}

        await step(out, "progress", progress)
        await step(out, "sample", lambda: call("fx__sample", {"prompt": "ping"}))
        await step(out, "elicit", lambda: call("fx__elicit", {"message": "Who are you?"}))
        await step(out, "roots", lambda: call("fx__roots", {}))
        out["asked"] = asked

        async def resources():
            return [str(r.uri) for r in await client.list_resources()]

        await step(out, "resources", resources)

        async def read():
            return [
                {"uri": str(c.uri), "text": getattr(c, "text", None)}
                for c in await client.read_resource("fx+fixture://info")
            ]

        await step(out, "read", read)

        async def prompt():
            r = await client.get_prompt("fx__greet", {"name": "Ada"})
            return [{"role": m.role, "text": getattr(m.content, "text", None)} for m in r.messages]

        await step(out, "prompt", prompt)


async def main(url, modes):
    summary = {}
    for mode in modes:
        summary[mode] = {}
        try:
            with anyio.fail_after(STEP_TIMEOUT * 14):
                await drive(url, mode, summary[mode])
        except BaseException as e:  # noqa: BLE001 - includes ExceptionGroup from task groups
            summary[mode]["session_error"] = "".join(
                traceback.format_exception_only(type(e), e)
            ).strip()
    print(json.dumps(summary, indent=2, sort_keys=True))


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit("usage: fastmcp_client.py URL MODE...")
    anyio.run(main, sys.argv[1], sys.argv[2:])
