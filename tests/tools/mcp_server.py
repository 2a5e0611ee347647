"""A real MCP server for caxton's tool tests (Python's `mcp` package).

    python3 mcp_server.py stdio              # on stdin/stdout
    python3 mcp_server.py http PORT          # streamable HTTP on 127.0.0.1:PORT/mcp

Tools: add(a, b); slow(ms) answers after ms; crash() exits the process in
the middle of the call; big(n) answers n bytes of text; meta() answers the
request's _meta (the idempotency key and traceparent the node sent); env()
answers the names of the environment variables the server was started with.
Every call is appended to $CAXTON_TEST_CALLS, if set, one JSON line each.
"""

import asyncio
import json
import os
import sys

from mcp.server.mcpserver import Context, MCPServer

server = MCPServer("caxton-test")
CALLS = os.environ.get("CAXTON_TEST_CALLS")


def record(name, **fields):
    if CALLS:
        with open(CALLS, "a") as f:
            f.write(json.dumps({"tool": name, **fields}) + "\n")


@server.tool()
def add(a: float, b: float) -> str:
    """Add two numbers."""
    record("add", a=a, b=b)
    total = a + b
    return str(int(total)) if total == int(total) else str(total)


@server.tool()
async def slow(ms: int) -> str:
    """Answer after ms milliseconds."""
    record("slow", ms=ms)
    await asyncio.sleep(ms / 1000)
    return f"slept {ms} ms"


@server.tool()
def crash() -> str:
    """Exit the server in the middle of the call."""
    record("crash")
    os._exit(3)


@server.tool()
def big(n: int) -> str:
    """Answer n bytes of text."""
    record("big", n=n)
    return "x" * n


@server.tool()
def meta(ctx: Context) -> str:
    """Answer the request's _meta."""
    m = ctx.request_context.meta
    dumped = m.model_dump(by_alias=True, exclude_none=True) if hasattr(m, "model_dump") else (m or {})
    record("meta", meta=dumped)
    return json.dumps(dumped)


@server.tool()
def env() -> str:
    """Answer the names of the server's environment variables."""
    return json.dumps(sorted(os.environ))


if __name__ == "__main__":
    if sys.argv[1:2] == ["http"]:
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run("stdio")
