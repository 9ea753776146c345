#!/usr/bin/env bash
# Benchmark of the offline snapshot reader (issue 4), in one run, as ratios:
#   1. `cpbackup inspect` vs `etcdutl snapshot status` on the same ≥ 1 GiB, ≥ 500k-key snapshot
#      (goal ≤ 1.0×);
#   2. the full live-key pass (`cpbackup inspect` computes it) vs restoring the snapshot into a
#      scratch etcd and running `etcdctl get --prefix "" --keys-only` (goal ≤ 0.05×).
# Median of ROUNDS runs for (1), one run for (2); peak RSS from GNU time.
# Usage: scripts/bench-inspect.sh [--keys 520000] [--value-bytes 1900] [--rounds 3]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
cpb_bench_args 2,9 keys=KEYS:520000 value-bytes=VALUE:1900 rounds=ROUNDS:3 -- "$@"
cpb_bench_setup bench-inspect
cpb_bench_etcd

cpb_log "seeding $KEYS keys of ~$VALUE bytes (1000 per txn)"
cpb_seed_etcd "$ETCD" "$EP" "$KEYS" "$VALUE" raw
"$ETCD/etcdctl" --endpoints "$EP" snapshot save "$WORK/snap.db" >/dev/null 2>&1
SIZE=$(stat -c %s "$WORK/snap.db")
cpb_log "snapshot: $((SIZE / 1024 / 1024)) MiB"

: >"$WORK/times"
for _ in $(seq 1 "$ROUNDS"); do
  cpb_measure etcdutl "$ETCD/etcdutl" snapshot status "$WORK/snap.db" -w json
  cpb_measure inspect "$BIN" inspect "$WORK/snap.db" --output json
done
"$BIN" inspect "$WORK/snap.db" | head -3

restore_and_list() {
  rm -rf "$WORK/restored"
  "$ETCD/etcdutl" snapshot restore "$WORK/snap.db" --data-dir "$WORK/restored" >/dev/null 2>&1
  local port pid
  port=$(cpb_free_port)
  pid=$(cpb_start_etcd "$ETCD" "$WORK/restored" "$port" "$WORK/etcd-restored.log")
  "$ETCD/etcdctl" --endpoints "http://127.0.0.1:$port" get --prefix "" --keys-only >"$WORK/keys.txt"
  kill "$pid"
}
export -f restore_and_list cpb_start_etcd cpb_free_port
export ETCD WORK
cpb_measure restore_get bash -c restore_and_list
echo "etcdctl listed $(grep -c . "$WORK/keys.txt") keys from the restored etcd"

python3 - "$WORK/times" "$SIZE" "$KEYS" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
med = lambda n: statistics.median(float(r[1]) for r in rows if r[0] == n)
rss = lambda n: max(int(r[2]) for r in rows if r[0] == n) / 1024
e, i, rg = med("etcdutl"), med("inspect"), med("restore_get")
print("\nsnapshot %.0f MiB, %s keys" % (int(sys.argv[2]) / 2**20, sys.argv[3]))
print("%-34s %8s %10s" % ("", "seconds", "peak RSS"))
print("%-34s %8.2f %7.0f MiB" % ("etcdutl snapshot status", e, rss("etcdutl")))
print("%-34s %8.2f %7.0f MiB" % ("cpbackup inspect", i, rss("inspect")))
print("%-34s %8.2f %7.0f MiB" % ("etcdutl restore + etcd + get keys", rg, rss("restore_get")))
print("inspect / etcdutl status: %.2fx (goal <= 1.0)" % (i / e))
print("inspect / restore+get:    %.3fx (goal <= 0.05)" % (i / rg))
PY
