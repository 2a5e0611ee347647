#!/usr/bin/env bash
# Checks the alert rules (docs/prometheus/alerts.yml) with promtool, and
# runs their unit tests (alerts.test.yml): each alert fires on the figures
# it is about, with the words an operator reads. Run by make test. (The
# dashboard's queries are checked against a real node in
# tests/observability.rs.)
set -euo pipefail
cd "$(dirname "$0")/../docs/prometheus"
command -v promtool >/dev/null || { echo "check-alerts: promtool is needed (scripts/setup.sh installs it)" >&2; exit 1; }
promtool check rules alerts.yml
promtool test rules alerts.test.yml
