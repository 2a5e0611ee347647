#!/usr/bin/env bash
# Installs what the build and tests need on a fresh Debian machine. Safe to
# rerun: it installs only what is missing.
set -euo pipefail
need=()
command -v cc >/dev/null || need+=(gcc)
command -v make >/dev/null || need+=(make)
command -v curl >/dev/null || need+=(curl)
# `ip netns` for the cluster tests that cut a network.
command -v ip >/dev/null || need+=(iproute2)
# promtool checks the /metrics exposition in the tests.
command -v promtool >/dev/null || need+=(prometheus)
if ((${#need[@]})); then
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}"
fi
command -v cargo >/dev/null || { echo "setup: cargo (Rust 1.95) is required" >&2; exit 1; }
# cargo deny, for the supply-chain checks (make deny; about 2 minutes once).
command -v cargo-deny >/dev/null || cargo install -q cargo-deny --locked
# rustfmt and clippy, for make lint.
if command -v rustup >/dev/null; then
  rustup component list --installed | grep -q '^rustfmt' || rustup component add rustfmt
  rustup component list --installed | grep -q '^clippy' || rustup component add clippy
fi
cargo fmt --version >/dev/null && cargo clippy --version >/dev/null || { echo "setup: rustfmt and clippy are required (rustup component add rustfmt clippy)" >&2; exit 1; }
