#!/usr/bin/env bash
# Soak test of the whole-cluster disaster recovery (issue 16): runs the end-to-end test of
# tests/rejoin.rs (three kubeadm-shaped mTLS masters, quorum lost, --disable-etcd, restore,
# --rejoin, a rejoin rolled back and done again) RUNS times for etcd 3.5 and for etcd 3.4, one
# run at a time, and prints the pass rate of each. Logs of failed runs are kept.
# Usage: scripts/soak-restore.sh [--runs 20] [--logs DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
LOGS=target/soak-restore
cpb_bench_args 2,6 runs=RUNS:20 logs=LOGS -- "$@"
cpb_install_all
mkdir -p "$LOGS"
cpb_log "building the test"
cargo test --test rejoin --no-run >/dev/null 2>&1 || cargo test --test rejoin --no-run
summary=()
for v in etcd35 etcd34; do
  pass=0
  for i in $(seq 1 "$RUNS"); do
    start=$(date +%s)
    if cargo test -q --test rejoin "$v" -- --test-threads 1 >"$LOGS/$v-$i.log" 2>&1; then
      pass=$((pass + 1))
      rm -f "$LOGS/$v-$i.log"
      verdict=pass
    else
      verdict="FAIL (log: $LOGS/$v-$i.log)"
    fi
    printf '%s run %d/%d: %s in %ds\n' "$v" "$i" "$RUNS" "$verdict" $(($(date +%s) - start))
  done
  summary+=("$(printf '%s: %d/%d passed (%d %%)' "$v" "$pass" "$RUNS" $((pass * 100 / RUNS)))")
done
printf '%s\n' "${summary[@]}"
for s in "${summary[@]}"; do
  case $s in *"(100 %)") ;; *) exit 1 ;; esac
done
