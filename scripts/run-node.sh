#!/usr/bin/env bash
# Starts a caxton node in the foreground with the example agents deployed.
set -euo pipefail
cd "$(dirname "$0")/.."
API=${API:-127.0.0.1:7070}
DATA_DIR=${DATA_DIR:-caxton-data}
BIN=target/release/caxton

"$BIN" serve --api "$API" --data-dir "$DATA_DIR" &
node=$!
trap 'kill -TERM $node 2>/dev/null; wait $node' INT TERM
for _ in $(seq 1 100); do
  if curl -sf "http://$API/v1/ready" >/dev/null 2>&1; then break; fi
  kill -0 $node 2>/dev/null || { echo "caxton serve failed to start" >&2; exit 1; }
  sleep 0.1
done
for agent in echo counter; do
  if ! "$BIN" agent list --api "$API" | grep -q "^$agent "; then
    "$BIN" agent deploy "examples/agents/$agent.wat" --name "$agent" --instances 1 --api "$API"
  fi
done
echo "try: $BIN message send --to echo --content hello --wait-reply 1000 --api $API"
echo "     $BIN message send --to counter --content tick --wait-reply 1000 --api $API"
echo "node running (pid $node); Ctrl-C stops it"
wait $node
