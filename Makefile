# One build profile everywhere (release), and one set of dependency
# features: every target is built with the whole workspace, as `cargo test
# --workspace` builds it, so wasmer and cranelift are built once and shared
# by the binary, the tests, the benchmarks and the load test (building one
# package alone unifies features differently and rebuilds them all).
CARGO ?= cargo
PROFILE := --release
BUILD_ALL = $(CARGO) build $(PROFILE) --workspace --all-targets
API ?= 127.0.0.1:7070
DATA_DIR ?= caxton-data

.PHONY: build build-bin test agents baseline run bench loadtest fuzz deny lint install check-packaging check-alerts clean

build:
	$(BUILD_ALL)

## The node's binary alone, target/release/caxton (what `make install` puts in place).
build-bin:
	$(CARGO) build $(PROFILE) -p caxton --bin caxton

## Unit tests, then integration tests against real `caxton serve` processes
## (the example agents of every toolchain are built first), then the
## packaging (the systemd unit through systemd-analyze verify) and the alert
## rules (promtool check rules, and their unit tests). The baseline build is
## the rolling upgrade test's older node.
test: agents baseline
	$(CARGO) test $(PROFILE) --workspace
	scripts/check-packaging.sh
	scripts/check-alerts.sh

## The example agents in Rust (the SDK), C and AssemblyScript, into
## target/agents/ (scripts/setup.sh installs the toolchains).
agents:
	scripts/build-agents.sh

## The property-based fuzz tests of every decoder of outside bytes, and the
## host-interface fuzzer (generated modules calling every host and WASI
## function on a real shard), long and from a fresh seed (make test runs
## them short, with a fixed seed);
## FUZZ_CASES=N sets the cases per test, FUZZ_SEED=N replays a run.
FUZZ_CASES ?= 200000
FUZZ_SEED ?= random
fuzz:
	CAXTON_FUZZ_CASES=$(FUZZ_CASES) CAXTON_FUZZ_SEED=$(FUZZ_SEED) $(CARGO) test $(PROFILE) --workspace --lib --bins --test link_protocol --test host_fuzz -- fuzz acks_at_any_point

## The node at the commit in tests/upgrade-baseline, into
## target/baseline/caxton, for the rolling upgrade test (tests/upgrade.rs);
## built once per baseline commit.
baseline:
	scripts/build-baseline.sh

## Style and lints: rustfmt (rustfmt.toml) and clippy with the workspace's
## lints (Cargo.toml), warnings denied. `cargo fmt --all` fixes the first.
lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy $(PROFILE) --workspace --all-targets -- -D warnings

## Supply chain: cargo deny (advisories, bans, licenses) on a RustSec snapshot.
deny:
	scripts/deny.sh

## Build, start a node on $(API) with the example agents deployed; Ctrl-C stops it.
run: build
	API=$(API) DATA_DIR=$(DATA_DIR) scripts/run-node.sh

## ADR-0017's benchmark suite beside in-run baselines; writes docs/BENCHMARKS.md
## and target/bench/summary.json, fails when an ADR-0017 target is missed.
bench:
	$(BUILD_ALL)
	target/release/caxton-bench

## ADR-0017's four load scenarios, then ours (contract_net, steady_state
## with state writes and over two nodes, active_conversations, keyed_zipf),
## against real nodes (about 11 minutes); SCENARIO=peak_load runs one,
## LOADTEST_ARGS=--full the ADR's durations; REPEAT=N runs each scenario N
## times. A run of every scenario writes docs/LOADTEST.md.
SCENARIO ?=
LOADTEST_ARGS ?=
REPEAT ?= 1
loadtest: agents
	$(BUILD_ALL)
	target/release/caxton-loadtest $(if $(SCENARIO),--scenario $(SCENARIO)) --repeat $(REPEAT) $(LOADTEST_ARGS)

## The binary, the systemd unit and a starting config (docs/OPERATING.md,
## "Running under systemd"). PREFIX=/usr/local, DESTDIR= to stage.
PREFIX ?= /usr/local
DESTDIR ?=
## It builds nothing (a build as root leaves root-owned files in target/):
## run `make build-bin` as your user first, then `sudo make install`.
install:
	@test -x target/release/caxton || { echo "make install: no target/release/caxton: build it first, as your user: make build-bin" >&2; exit 1; }
	install -Dm755 target/release/caxton $(DESTDIR)$(PREFIX)/bin/caxton
	install -d $(DESTDIR)/etc/systemd/system $(DESTDIR)/etc/caxton $(DESTDIR)$(PREFIX)/share/doc/caxton
	sed -e 's|@BINDIR@|$(PREFIX)/bin|' -e 's|@DOCDIR@|$(PREFIX)/share/doc/caxton|' packaging/caxton.service > $(DESTDIR)/etc/systemd/system/caxton.service
	install -Dm644 packaging/caxton.sysusers $(DESTDIR)/etc/sysusers.d/caxton.conf
	[ -n "$(DESTDIR)" ] || ! command -v systemd-sysusers >/dev/null || systemd-sysusers /etc/sysusers.d/caxton.conf
	[ -e $(DESTDIR)/etc/caxton/caxton.toml ] || install -m644 packaging/caxton.toml $(DESTDIR)/etc/caxton/caxton.toml
	install -m644 packaging/secrets.env.example $(DESTDIR)/etc/caxton/secrets.env.example
	install -m644 docs/*.md $(DESTDIR)$(PREFIX)/share/doc/caxton/
	install -d $(DESTDIR)$(PREFIX)/share/doc/caxton/grafana $(DESTDIR)$(PREFIX)/share/doc/caxton/prometheus
	install -m644 docs/grafana/caxton.json $(DESTDIR)$(PREFIX)/share/doc/caxton/grafana/
	install -m644 docs/prometheus/alerts.yml $(DESTDIR)$(PREFIX)/share/doc/caxton/prometheus/

## Installs into a scratch DESTDIR and checks the unit with
## `systemd-analyze verify` (make test runs it).
check-packaging:
	scripts/check-packaging.sh

## promtool check rules and promtool test rules on docs/prometheus (make
## test runs it).
check-alerts:
	scripts/check-alerts.sh

clean:
	$(CARGO) clean
