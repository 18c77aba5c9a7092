"""A small MCP server written with fastmcp (PyPI `fastmcp`), served over stdio.

Usage: fastmcp_server.py

tests/interop_fastmcp.rs mounts it as a stdio backend of the gateway and drives it through the
gateway with rmcp's client. What it offers, and what the test expects back:

- tool `shout(text)`: the text in capitals, with a `!`;
- tool `add(a, b)`: the sum, as text and as structured content `{"result": a + b}`;
- tool `count_to(n)`: reports progress 1..n of n (message `step i`), then answers `counted to n`;
- resource `memo://greeting` (text/plain): `hello from fastmcp`;
- resource template `memo://notes/{name}`: `note about {name}`;
- prompt `haiku(topic)`: one user message `Write a haiku about {topic}.`
"""

from fastmcp import Context, FastMCP

mcp = FastMCP("fastmcp-interop", instructions="A fastmcp server mounted behind Manifold.")


@mcp.tool
def shout(text: str) -> str:
    """Returns the text in capitals, with an exclamation mark."""
    return text.upper() + "!"


@mcp.tool
def add(a: int, b: int) -> int:
    """Adds two integers."""
    return a + b


@mcp.tool
async def count_to(n: int, ctx: Context) -> str:
    """Counts from 1 to n, reporting each step as progress."""
    for i in range(1, n + 1):
        await ctx.report_progress(progress=i, total=n, message=f"step {i}")
    return f"counted to {n}"


@mcp.resource("memo://greeting", mime_type="text/plain")
def greeting() -> str:
    """A fixed greeting."""
    return "hello from fastmcp"


@mcp.resource("memo://notes/{name}")
def note(name: str) -> str:
    """A note about `name`."""
    return f"note about {name}"


@mcp.prompt
def haiku(topic: str) -> str:
    """Asks for a haiku about a topic."""
    return f"Write a haiku about {topic}."


if __name__ == "__main__":
    # The banner goes to stderr, but a quiet stdio backend keeps the gateway's log readable.
    mcp.run(transport="stdio", show_banner=False)
