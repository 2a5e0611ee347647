#!/usr/bin/env bash
# Supply-chain checks: cargo deny (advisories, bans, licenses, sources)
# against the RustSec snapshot in shared/advisory-db.bundle (this machine
# reaches no git host, so cargo-deny cannot fetch its database).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_HOME="${CARGO_HOME:-$HOME/.cargo}"
command -v cargo-deny >/dev/null || { echo "deny: cargo-deny is missing (scripts/setup.sh installs it)" >&2; exit 1; }
db="$CARGO_HOME/advisory-dbs/advisory-db-3157b0e258782691"
if [[ ! -d "$db/.git" ]]; then
  bundle=""
  for b in "${ADVISORY_DB_BUNDLE:-}" ../shared/advisory-db.bundle /work/shared/advisory-db.bundle; do
    if [[ -n "$b" && -f "$b" ]]; then bundle="$b"; break; fi
  done
  if [[ -z "$bundle" ]]; then
    echo "deny: no advisory database snapshot (set ADVISORY_DB_BUNDLE); checking bans, licenses and sources only" >&2
    cargo fetch -q
    exec cargo deny --offline check bans licenses sources
  fi
  mkdir -p "$(dirname "$db")"
  git clone -q "$bundle" "$db"
fi
# cargo metadata wants every platform's crates; fetch them once, then stay
# offline.
cargo fetch -q
cargo deny --offline check
