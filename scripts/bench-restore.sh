#!/usr/bin/env bash
# Benchmark of the whole-cluster restore (issue 7), in one run, as a ratio: the time from
# `cpbackup restore --yes` to etcd serving the restored data on a fake kubeadm node (a shell
# loop plays the kubelet: etcd runs while its manifest is in place), against
# `etcdutl snapshot restore` alone on the same (plaintext) snapshot (goal <= 1.2x), and against
# what an operator does by hand: that restore, then etcd started on it until it serves.
# Median of ROUNDS runs; peak RSS from GNU time.
# Usage: scripts/bench-restore.sh [--keys 520000] [--value-bytes 1900] [--rounds 3] [--work DIR]
#        [--compression zstd|gzip] [--style raw|fixtures]
#   --work DIR: keep the seeded node, store and snapshot in DIR and reuse them next time
#   --compression: the bundle's codec; --style: what the keys hold (fixtures: real objects)
#   The restore's phases (from its JSON log) are reported as medians too.
#   CPBACKUP_BENCH_BIN=/path/to/other/cpbackup measures another build on the same node (--work).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
KEEP=
cpb_bench_args 2,12 keys=KEYS:520000 value-bytes=VALUE:1900 rounds=ROUNDS:3 work=KEEP \
  compression=COMPRESSION:zstd style=STYLE:raw -- "$@"
cpb_bench_setup bench-restore
if [ -n "$KEEP" ]; then
  rm -rf "$WORK"
  mkdir -p "$KEEP"
  WORK=$(cd "$KEEP" && pwd)
fi
ETCD=$CPBACKUP_TEST_ETCD35_DIR
export ETCDCTL_API=3
ROOT=$WORK/root
if [ -f "$WORK/ports" ]; then read -r PORT PEER <"$WORK/ports"; else
  PORT=$(cpb_free_port)
  PEER=$(cpb_free_port)
fi
EP=http://127.0.0.1:$PORT
M=$ROOT/etc/kubernetes/manifests/etcd.yaml
PREPARED=
[ -f "$WORK/prepared" ] && PREPARED=1
[ -n "$PREPARED" ] || rm -rf "$ROOT"
mkdir -p "$ROOT/etc/kubernetes/pki/etcd" "$ROOT/etc/kubernetes/manifests" "$ROOT/var/lib"
echo "plain HTTP in this benchmark" >"$ROOT/etc/kubernetes/pki/etcd/ca.crt"
cat >"$M" <<YAML
apiVersion: v1
kind: Pod
metadata:
  name: etcd
spec:
  containers:
  - command:
    - etcd
    - --name=cp-1
    - --data-dir=/var/lib/etcd
    - --listen-client-urls=$EP
    - --advertise-client-urls=$EP
    - --listen-peer-urls=http://127.0.0.1:$PEER
    - --initial-advertise-peer-urls=http://127.0.0.1:$PEER
    - --initial-cluster=cp-1=http://127.0.0.1:$PEER
    - --quota-backend-bytes=8589934592
    - --max-txn-ops=2000
    - --max-request-bytes=16777216
YAML

# The kubelet: etcd runs while the manifest exists (checked every 50 ms, like a sync loop).
touch "$WORK/kubelet.run"
(
  pid=""
  while [ -e "$WORK/kubelet.run" ]; do
    if [ -f "$M" ]; then
      if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then
        mapfile -t args < <(sed -nE 's/^ +- (--.*)$/\1/p' "$M" | sed "s|--data-dir=|--data-dir=$ROOT|")
        "$ETCD/etcd" "${args[@]}" >>"$WORK/kubelet-etcd.log" 2>&1 &
        pid=$!
      fi
    elif [ -n "$pid" ]; then
      kill "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
      pid=""
    fi
    sleep 0.05
  done
  [ -n "$pid" ] && kill "$pid" 2>/dev/null
) &
PIDS+=("$!")
trap 'rm -f "$WORK/kubelet.run"; sleep 0.3; for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; pkill -f "data-dir=$ROOT" 2>/dev/null || true; [ -n "$KEEP" ] || rm -rf "$WORK"' EXIT
for _ in $(seq 1 300); do "$ETCD/etcdctl" --endpoints "$EP" endpoint health >/dev/null 2>&1 && break; sleep 0.1; done

KEY=$WORK/key.txt
if [ -z "$PREPARED" ]; then
cpb_log "seeding $KEYS keys of ~$VALUE bytes (1000 per txn)"
cpb_seed_etcd "$ETCD" "$EP" "$KEYS" "$VALUE" "$STYLE"
R=$("$BIN" keygen --out "$KEY" 2>&1 | grep -o 'age1[0-9a-z]*' | head -1)
"$BIN" --host-root "$ROOT" backup --recipient "$R" --store "$WORK/store" --etcd-endpoint "$EP" --node-name cp-1 \
  --compression "$COMPRESSION" -q >/dev/null
"$ETCD/etcdctl" --endpoints "$EP" snapshot save "$WORK/snap.db" >/dev/null 2>&1
echo "$PORT $PEER" >"$WORK/ports"
touch "$WORK/prepared"
fi
SIZE=$(stat -c %s "$WORK/snap.db")
cpb_log "snapshot: $((SIZE / 1024 / 1024)) MiB"

restore_alone() {
  rm -rf "$WORK/alone"
  "$ETCD/etcdutl" snapshot restore "$WORK/snap.db" --data-dir "$WORK/alone" --name cp-1 \
    --initial-cluster "cp-1=http://127.0.0.1:1" --initial-advertise-peer-urls http://127.0.0.1:1
}
export ETCD WORK
: >"$WORK/times"
restore_and_start() {
  restore_alone
  local port peer; port=$(cpb_free_port); peer=$(cpb_free_port)
  "$ETCD/etcd" --name cp-1 --data-dir "$WORK/alone" --listen-client-urls "http://127.0.0.1:$port" \
    --advertise-client-urls "http://127.0.0.1:$port" --listen-peer-urls "http://127.0.0.1:$peer" \
    --initial-cluster cp-1=http://127.0.0.1:1 --initial-advertise-peer-urls http://127.0.0.1:1 \
    --quota-backend-bytes 8589934592 >"$WORK/alone.log" 2>&1 &
  local pid=$!
  until "$ETCD/etcdctl" --endpoints "http://127.0.0.1:$port" endpoint health >/dev/null 2>&1; do
    kill -0 "$pid" || return 1
    sleep 0.05
  done
  kill "$pid"; wait "$pid" || true
}
export -f restore_alone restore_and_start cpb_free_port
# Both inputs in the page cache before each contender (this VM's balloon evicts cache at will).
warm() { cat "$WORK/snap.db" "$WORK"/store/*/*/*.cpb >/dev/null; }
for _ in $(seq 1 "$ROUNDS"); do
  warm
  cpb_measure etcdutl bash -c restore_alone
  warm
  cpb_measure by-hand bash -c restore_and_start
  warm
  cpb_measure cpbackup "$BIN" --host-root "$ROOT" restore --latest --yes --log-format json --identity "$KEY" \
    --store "$WORK/store" --etcdutl "$ETCD/etcdutl" --state-dir "$WORK/state"
  # where cpbackup's time went, from its log
  python3 - "$WORK/last.err" >>"$WORK/times" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    if not line.startswith("{"):
        continue
    r = json.loads(line)
    m = r.get("message", "")
    name = ("unpack" if m.startswith("unpacked and verified") else
            "etcdutl" if m.startswith("restore the snapshot") else
            "stop" if m.startswith("stop etcd") else
            "serve" if m.startswith("wait until etcd") else None)
    if name:
        print("phase-%s %s 0" % (name, r["seconds"]))
PY
  # back to the original data for the next round (not measured)
  "$BIN" --host-root "$ROOT" restore --rollback --yes -q --state-dir "$WORK/state" >/dev/null 2>&1
done

python3 - "$WORK/times" "$SIZE" "$KEYS" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
med = lambda n: statistics.median(float(r[1]) for r in rows if r[0] == n)
rss = lambda n: max(int(r[2]) for r in rows if r[0] == n) / 1024
e, c = med("etcdutl"), med("cpbackup")
print("\nsnapshot %.0f MiB, %s keys" % (int(sys.argv[2]) / 2**20, sys.argv[3]))
print("%-44s %8s %10s" % ("", "seconds", "peak RSS"))
print("%-44s %8.2f %7.0f MiB" % ("etcdutl snapshot restore (plaintext file)", e, rss("etcdutl")))
h = med("by-hand")
print("%-44s %8.2f %7.0f MiB" % ("etcdutl restore, then etcd until it serves", h, rss("by-hand")))
print("%-44s %8.2f" % ("  of which etcdutl (median above)", e))
print("%-44s %8.2f %7.0f MiB" % ("cpbackup restore (bundle -> etcd serving)", c, rss("cpbackup")))
for p, what in [("unpack", "fetch, decrypt, decompress, verify, stage"), ("stop", "stop etcd"),
                ("etcdutl", "etcdutl snapshot restore --skip-hash-check"), ("serve", "etcd start until it serves")]:
    print("%-44s %8.2f" % ("  " + what, med("phase-" + p)))
print("cpbackup restore / etcdutl restore: %.2fx (goal <= 1.2)" % (c / e))
print("cpbackup restore / etcdutl restore + etcd start: %.2fx" % (c / h))
PY
