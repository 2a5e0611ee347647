#!/usr/bin/env bash
# Installs what the build and tests need on a fresh Debian machine. Safe to
# rerun: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v cc >/dev/null || need+=(gcc)
command -v make >/dev/null || need+=(make)
command -v curl >/dev/null || need+=(curl)
# `ip netns` for the cluster tests that cut a network.
command -v ip >/dev/null || need+=(iproute2)
# promtool checks the /metrics exposition in the tests.
command -v promtool >/dev/null || need+=(prometheus)
# The example agents' toolchains (make agents): clang for wasm32 with
# wasi-libc and its compiler runtime, and Node.js for AssemblyScript.
command -v clang >/dev/null || need+=(clang)
command -v wasm-ld >/dev/null || need+=(lld)
[ -e /usr/lib/wasm32-wasi/libc.a ] || need+=(wasi-libc)
compgen -G "/usr/lib/llvm-*/lib/clang/*/lib/wasi/libclang_rt.builtins-wasm32.a" >/dev/null || need+=(libclang-rt-14-dev-wasm32)
command -v npm >/dev/null || need+=(nodejs npm)
# The tool tests' real MCP servers run on Python's `mcp` package, in a venv.
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
# systemd-analyze checks the packaged unit (make test, check-packaging),
# and strace lists the system calls a node makes against its filter.
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v strace >/dev/null || need+=(strace)
if ((${#need[@]})); then
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}"
fi
command -v cargo >/dev/null || { echo "setup: cargo (Rust 1.95) is required" >&2; exit 1; }
# cargo deny, for the supply-chain checks (make deny; about 2 minutes once).
command -v cargo-deny >/dev/null || cargo install -q cargo-deny --locked
# Rust's WebAssembly targets, for the SDK's example agents.
if command -v rustup >/dev/null; then
  installed=$(rustup target list --installed)
  for t in wasm32-unknown-unknown wasm32-wasip1; do
    grep -qx "$t" <<<"$installed" || rustup target add "$t"
  done
fi
# The AssemblyScript compiler and WASI shim, as package-lock.json pins them.
[ -x examples/assemblyscript/node_modules/.bin/asc ] || (cd examples/assemblyscript && npm ci --no-audit --no-fund --loglevel=error)
# The tool tests (tests/tools.rs): Python's MCP SDK for real MCP servers, and
# MCP's own conformance suite, as tests/tools/package-lock.json pins it
# (--ignore-scripts: a dependency's install script would add git hooks).
[ -x tests/tools/.venv/bin/python ] && tests/tools/.venv/bin/python -c 'import mcp' 2>/dev/null || {
  python3 -m venv tests/tools/.venv
  tests/tools/.venv/bin/pip install -q --disable-pip-version-check 'mcp==2.3.0'
}
[ -d tests/tools/node_modules/@modelcontextprotocol/conformance ] || (cd tests/tools && npm install --ignore-scripts --no-audit --no-fund --loglevel=error)
# rustfmt and clippy, for make lint.
if command -v rustup >/dev/null; then
  rustup component list --installed | grep -q '^rustfmt' || rustup component add rustfmt
  rustup component list --installed | grep -q '^clippy' || rustup component add clippy
fi
cargo fmt --version >/dev/null && cargo clippy --version >/dev/null || { echo "setup: rustfmt and clippy are required (rustup component add rustfmt clippy)" >&2; exit 1; }
# A clean release build with its tests takes about 3 GB under target/; a full
# disk shows up later as a linker error far from its cause, so say it here.
free_kb=$(df -Pk . | awk 'NR==2 {print $4}')
if ((free_kb < 6 * 1024 * 1024)); then
  echo "setup: warning: only $((free_kb / 1024)) MiB free here; the build and tests need about 6 GiB" >&2
fi
