#!/usr/bin/env bash
# Runs a real node under strace through what a node does (start with a
# token file, restore, deploy an SDK agent, handle messages, a SIGHUP
# reload, a SIGTERM drain) and checks that every system call it made is
# allowed by the unit's filter: @system-service without @privileged
# (packaging/caxton.service). A call outside it would be refused (EPERM)
# under systemd, breaking the node in production only.
# Usage: scripts/check-syscalls.sh [CAXTON_BINARY]; run by check-packaging.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/caxton}
agent=target/agents/rust-echo.wasm
[ -e "$agent" ] || { echo "check-syscalls: $agent is missing (make agents)" >&2; exit 1; }
work=$(mktemp -d)
strace_pid= node_pid=
cleanup() {
  [ -n "$node_pid" ] && kill -9 "$node_pid" 2>/dev/null || true
  [ -n "$strace_pid" ] && kill -9 "$strace_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# The allowed set: a group's members, its nested groups expanded.
expand() {
  systemd-analyze syscall-filter "$1" | while read -r entry _; do
    case "$entry" in
      '' | '#'* | "$1") ;;
      @*) expand "$entry" ;;
      *) echo "$entry" ;;
    esac
  done
}
expand @system-service | sort -u >"$work/allowed"
expand @privileged | sort -u >"$work/privileged"
comm -23 "$work/allowed" "$work/privileged" >"$work/permitted"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
api="127.0.0.1:$port"
token=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
printf '%s\n' "$token" >"$work/token" && chmod 600 "$work/token"
chmod 755 "$work"
# As the unit runs it: not as root (as root, SQLite also calls fchown,
# which @privileged holds back; as any other user it does not).
as_user=()
if [ "$(id -u)" = 0 ]; then
  chown -R nobody:nogroup "$work"
  as_user=(setpriv --reuid=nobody --regid=nogroup --clear-groups)
fi
strace -f -qq -o "$work/trace" "${as_user[@]}" "$bin" serve --cores 1 --api "$api" --data-dir "$work/data" --api-token-file "$work/token" 2>"$work/log" &
strace_pid=$!
# Signals go to the node, strace's child (strace does not pass them on).
for _ in $(seq 100); do
  node_pid=$(pgrep -P "$strace_pid" || true)
  [ -n "$node_pid" ] && break
  sleep 0.05
done
[ -n "$node_pid" ] || { echo "check-syscalls: the node did not start under strace" >&2; exit 1; }
curl_api() { curl -sS --max-time 10 -H "Authorization: Bearer $token" "$@"; }
for _ in $(seq 300); do
  curl -sf "http://$api/v1/ready" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -sf "http://$api/v1/ready" >/dev/null || { echo "check-syscalls: the node never became ready:" >&2; cat "$work/log" >&2; exit 1; }
curl_api -f -X PUT --data-binary "@$agent" "http://$api/v1/agents/echo?instances=1" >/dev/null
for i in 1 2 3; do
  answer=$(curl_api -f -H 'content-type: application/json' -d "{\"receiver\":\"echo\",\"content\":\"hi $i\"}" "http://$api/v1/messages?reply_timeout_ms=5000")
  grep -q "hi $i" <<<"$answer" || { echo "check-syscalls: no echo of message $i: $answer" >&2; exit 1; }
done
curl_api -f "http://$api/metrics" >/dev/null
kill -HUP "$node_pid"
for _ in $(seq 100); do
  grep -q "SIGHUP: API tokens read again" "$work/log" && break
  sleep 0.05
done
grep -q "SIGHUP: API tokens read again" "$work/log" || { echo "check-syscalls: the node did not reload on SIGHUP:" >&2; cat "$work/log" >&2; exit 1; }
kill -TERM "$node_pid"
# strace exits with its tracee's status.
wait "$strace_pid" || { echo "check-syscalls: the node did not exit 0:" >&2; cat "$work/log" >&2; exit 1; }
strace_pid= node_pid=

# The node's calls: from its exec on (setpriv's own come before). "PID
# name(" at a line's start; resumed and signal lines are skipped.
awk -v exec="execve(\"$bin\"" 'found || index($0, exec) { found = 1; print }' "$work/trace" >"$work/node-trace"
[ -s "$work/node-trace" ] || { echo "check-syscalls: no exec of $bin in the trace" >&2; exit 1; }
grep -oE '^[0-9]+ +[a-z0-9_]+\(' "$work/node-trace" | sed -E 's/^[0-9]+ +//; s/\($//' | sort -u >"$work/used"
outside=$(comm -23 "$work/used" "$work/permitted")
if [ -n "$outside" ]; then
  echo "check-syscalls: the node made system calls that packaging/caxton.service's SystemCallFilter refuses:" >&2
  echo "$outside" >&2
  exit 1
fi
echo "check-syscalls: $(wc -l <"$work/used") distinct system calls, all within @system-service minus @privileged"
