#!/usr/bin/env bash
# Builds the node at the baseline commit (tests/upgrade-baseline) into
# target/baseline/caxton, for the rolling upgrade test (tests/upgrade.rs):
# a cluster of that build is upgraded, node by node, to this one.
#
# The baseline is built from a local clone of this repository (no network)
# into a target dir of its own, target/baseline-build: built in this
# checkout's target dir, it would replace target/release/caxton (and the
# other binaries) under tests that may be running. That costs one more
# build of the dependencies (about 10 minutes on 2 cores), once per
# baseline commit: skipped when target/baseline/caxton is already that
# commit's build.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
commit=$(grep -v '^#' tests/upgrade-baseline | head -1 | tr -d '[:space:]')
out=target/baseline
if [ -x "$out/caxton" ] && [ "$(cat "$out/commit" 2>/dev/null)" = "$commit" ]; then
  exit 0
fi
git cat-file -e "$commit^{commit}" 2>/dev/null || {
  echo "build-baseline: commit $commit is not in this clone (a shallow clone? git fetch --unshallow)" >&2
  exit 1
}
rm -rf "$out"
mkdir -p "$out"
git clone -q --shared --no-checkout "$root" "$out/src"
git -C "$out/src" checkout -q --detach "$commit"
# Only its node: not the baseline's tests, benchmarks or load test.
(cd "$out/src" && CARGO_TARGET_DIR="$root/target/baseline-build" cargo build --release --locked -p caxton --bin caxton -q)
cp "$root/target/baseline-build/release/caxton" "$out/caxton"
echo "$commit" >"$out/commit"
rm -rf "$out/src"
echo "build-baseline: target/baseline/caxton is commit ${commit:0:12}"
