#!/usr/bin/env bash
# Stages `make install` in a scratch directory and checks what it put
# there: the unit passes `systemd-analyze verify` with no warning, and the
# binary reads the installed config. Run by make test.
set -euo pipefail
cd "$(dirname "$0")/.."
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
make -s install DESTDIR="$stage" PREFIX=/usr/local >/dev/null
unit="$stage/etc/systemd/system/caxton.service"
grep -q '^ExecStart=/usr/local/bin/caxton serve --config /etc/caxton/caxton.toml$' "$unit"
if grep -Eq -- '--(api-token|cluster-key)( |=)' "$unit"; then
  echo "check-packaging: a secret on the unit's command line" >&2
  exit 1
fi
# Verified in place of the installed one, its binary the staged copy (a
# --root has no units to depend on).
mkdir "$stage/check"
sed "s|^ExecStart=/usr/local/bin/caxton|ExecStart=$stage/usr/local/bin/caxton|" "$unit" >"$stage/check/caxton.service"
warnings=$(systemd-analyze verify "$stage/check/caxton.service" 2>&1 || echo "systemd-analyze verify failed")
if [ -n "$warnings" ]; then
  echo "check-packaging: systemd-analyze verify $unit:" >&2
  echo "$warnings" >&2
  exit 1
fi
# The installed binary takes the installed config.
"$stage/usr/local/bin/caxton" serve --config "$stage/etc/caxton/caxton.toml" --check-config >/dev/null
echo "check-packaging: unit, binary and config install and verify"
