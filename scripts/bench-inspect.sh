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
KEYS=520000
VALUE=1900
ROUNDS=3
while [ $# -gt 0 ]; do
  case $1 in
    --keys) KEYS=$2; shift 2 ;;
    --value-bytes) VALUE=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
cpb_bench_setup bench-inspect
ETCD=$CPBACKUP_TEST_ETCD35_DIR
ETCD=$CPBACKUP_TEST_ETCD35_DIR
export ETCDCTL_API=3
PORT=$(cpb_free_port)
EP=http://127.0.0.1:$PORT
PIDS+=("$(CPB_ETCD_EXTRA="--max-txn-ops 2000 --max-request-bytes 16777216" cpb_start_etcd "$ETCD" "$WORK/etcd" "$PORT" "$WORK/etcd.log")")

cpb_log "seeding $KEYS keys of ~$VALUE bytes (1000 per txn)"
python3 - "$KEYS" "$VALUE" "$ETCD/etcdctl" "$EP" <<'PY'
import random, subprocess, sys
from concurrent.futures import ThreadPoolExecutor
n, size, ctl, ep = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
kinds = ["configmaps", "secrets", "pods", "events", "replicasets", "leases"]
def batch(start):
    r = random.Random(start)
    lines = [""]
    for i in range(start, min(start + 1000, n)):
        kind = kinds[i % len(kinds)]
        body = "%x" % r.getrandbits(size * 4 + 8)
        lines.append("put /registry/%s/ns-%d/obj-%d %s" % (kind, i % 211, i, body[:size]))
    lines += ["", "", ""]
    subprocess.run([ctl, "--endpoints", ep, "txn"], input="\n".join(lines).encode(), stdout=subprocess.DEVNULL, check=True)
with ThreadPoolExecutor(2) as ex:
    list(ex.map(batch, range(0, n, 1000)))
PY
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
