"""A hostile 'MCP server' for caxton's tool tests: it answers every line it
reads with bytes that are not JSON-RPC (garbage, half a JSON object, a
result for an id never asked, a huge line without a newline at the end of
its life), and never completes an initialize."""

import sys

sys.stdout.write("this is not json\n")
sys.stdout.write('{"jsonrpc": "2.0", "id": 999, "result": {"surprise": true}}\n')
sys.stdout.flush()
for line in sys.stdin:
    sys.stdout.write('{"jsonrpc": "2.0", "id": \n')
    sys.stdout.write("\x00\xff garbage \n")
    sys.stdout.flush()
