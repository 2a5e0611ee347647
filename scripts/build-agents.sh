#!/usr/bin/env bash
# Builds the example agents of every toolchain into target/agents/ (make
# agents; the tests call it when an agent is missing):
#   rust-*.wasm  examples/rust (the SDK): echo, counter, relay, asker,
#                reminder, manager, bidder, kv, session, calculator, fetch,
#                tool_relay; wasm32-unknown-unknown and -wasip1,
#                after their native unit tests against the SDK's mock host
#                (and those of docs/AGENTS.md's Rust blocks, agents_md);
#   c-*.wasm     examples/c, clang with wasi-libc, a WASI reactor;
#   as-*.wasm    examples/assemblyscript, asc with @assemblyscript/wasi-shim.
# scripts/setup.sh installs the toolchains.
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/agents
mkdir -p "$out"

# Rust: one cargo invocation per target, into a target dir of their own.
rust_target=$PWD/$out/rust
mkdir -p "$rust_target"
(
  cd examples/rust
  CARGO_TARGET_DIR=$rust_target/native cargo test -q --release >"$rust_target/native-tests.log" 2>&1 || { cat "$rust_target/native-tests.log"; exit 1; }
  CARGO_TARGET_DIR=$rust_target cargo build -q --release --target wasm32-unknown-unknown -p echo -p counter -p relay -p asker -p reminder -p manager -p bidder -p kv -p session -p calculator -p fetch -p tool_relay
  CARGO_TARGET_DIR=$rust_target cargo build -q --release --target wasm32-wasip1 -p std_agent -p echo
)
for a in echo counter relay asker reminder manager bidder kv session calculator fetch tool_relay; do cp "$rust_target/wasm32-unknown-unknown/release/$a.wasm" "$out/rust-$a.wasm"; done
cp "$rust_target/wasm32-wasip1/release/std_agent.wasm" "$out/rust-std.wasm"
cp "$rust_target/wasm32-wasip1/release/echo.wasm" "$out/rust-echo-wasip1.wasm"

# C: clang's wasm32-wasi target and Debian's wasi-libc (no sysroot flag).
clang --target=wasm32-wasi -O2 -Wall -Wextra -Werror -mexec-model=reactor -Wl,--strip-debug -o "$out/c-greeter.wasm" examples/c/greeter.c
# docs/AGENTS.md's C blocks compile against examples/c/caxton.h.
rm -f "$out"/agents_md_*.c
awk -v dir="$out" '/^```c$/ { n++; inside = 1; next } /^```$/ { inside = 0 } inside { print > (dir "/agents_md_" n ".c") }' docs/AGENTS.md
for c in "$out"/agents_md_*.c; do
  [ -e "$c" ] || continue
  clang --target=wasm32-wasi -O2 -Wall -Wextra -Werror -include examples/c/caxton.h -c -o "${c%.c}.o" "$c"
done

# AssemblyScript: the packages pinned by package-lock.json.
(
  cd examples/assemblyscript
  [ -x node_modules/.bin/asc ] || npm ci --no-audit --no-fund --loglevel=error
  node_modules/.bin/asc assembly/index.ts --config ./node_modules/@assemblyscript/wasi-shim/asconfig.json -O3 --exportStart _initialize -o "../../$out/as-greeter.wasm"
)
ls "$out"/*.wasm >/dev/null
echo "build-agents: $(ls "$out"/*.wasm | wc -l) agents in $out"
