#!/usr/bin/env bash
# Benchmark of the whole-cluster restore's RTO as users feel it (issue 16), in one run, as ratios,
# on a fake kubeadm node (a shell loop plays the kubelet: etcd runs while its manifest is in
# place), medians of ROUNDS runs, peak RSS from GNU time:
#   1. outage window: etcd stopped -> etcd serving the backup (cpbackup's steps from the journal
#      log) against `etcdutl snapshot restore` + etcd started on the same plaintext file
#      (goal <= 1.1x: fetching, decrypting and verifying happen before the stop);
#   2. whole restore: `cpbackup restore --yes` against the manual path on the same bundle
#      (`age -d | tar -x`, `etcdutl snapshot restore`, start etcd until it serves; goal <= 0.7x);
#   3. rejoin of a second member: `cpbackup restore --rejoin` on a second fake node against
#      etcd's own `member add` + a new member started until it serves the leader's revision
#      (goal <= 1.5x).
# Usage: scripts/bench-restore.sh [--keys 520000] [--value-bytes 1900] [--rounds 3] [--work DIR]
#        [--compression zstd|gzip] [--style raw|fixtures]
#   --work DIR: keep the seeded node, store and snapshot in DIR and reuse them next time
#   --compression: the bundle's codec; --style: what the keys hold (fixtures: real objects)
#   CPBACKUP_BENCH_BIN=/path/to/other/cpbackup measures another build on the same node (--work).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
KEEP=
cpb_bench_args 2,18 keys=KEYS:520000 value-bytes=VALUE:1900 rounds=ROUNDS:3 work=KEEP \
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

# The kubelet of a fake root: etcd runs while its manifest exists (checked every 50 ms, like a
# sync loop), host paths under the root.
kubelet() {
  local root=$1 m=$1/etc/kubernetes/manifests/etcd.yaml pid=""
  while [ -e "$WORK/kubelet.run" ]; do
    if [ -f "$m" ]; then
      if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then
        mapfile -t args < <(sed -nE 's/^ +- (--.*)$/\1/p' "$m" | sed "s|--data-dir=|--data-dir=$root|")
        "$ETCD/etcd" "${args[@]}" >>"$root.kubelet-etcd.log" 2>&1 &
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
}
touch "$WORK/kubelet.run"
kubelet "$ROOT" &
PIDS+=("$!")
trap 'rm -f "$WORK/kubelet.run"; sleep 0.3; for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; pkill -f "data-dir=$ROOT" 2>/dev/null || true; pkill -f "data-dir=$ROOT2" 2>/dev/null || true; pkill -f "data-dir=$WORK/joined" 2>/dev/null || true; [ -n "$KEEP" ] || rm -rf "$WORK"' EXIT
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

# A second master (cp-2): its etcd an old single-member cluster of its own, to be rejoined.
ROOT2=$WORK/root2
M2=$ROOT2/etc/kubernetes/manifests/etcd.yaml
if [ -f "$WORK/ports2" ]; then read -r PORT2 PEER2 PEER3 <"$WORK/ports2"; else
  PORT2=$(cpb_free_port); PEER2=$(cpb_free_port); PEER3=$(cpb_free_port)
  echo "$PORT2 $PEER2 $PEER3" >"$WORK/ports2"
fi
mkdir -p "$ROOT2/etc/kubernetes/pki/etcd" "$ROOT2/etc/kubernetes/manifests" "$ROOT2/var/lib"
echo "plain HTTP in this benchmark" >"$ROOT2/etc/kubernetes/pki/etcd/ca.crt"
[ -f "$M2" ] || sed -e "s|cp-1|cp-2|g" -e "s|127.0.0.1:$PORT|127.0.0.1:$PORT2|g" -e "s|127.0.0.1:$PEER|127.0.0.1:$PEER2|g" "$M" >"$M2"
kubelet "$ROOT2" &
PIDS+=("$!")
BUNDLE=$(ls "$WORK"/store/*/*/*.cpb | head -1)
TARZ=--zstd
[ "$COMPRESSION" = gzip ] && TARZ=-z

restore_alone() {
  rm -rf "$WORK/alone"
  "$ETCD/etcdutl" snapshot restore "$1" --data-dir "$WORK/alone" --name cp-1 \
    --initial-cluster "cp-1=http://127.0.0.1:1" --initial-advertise-peer-urls http://127.0.0.1:1
}
# until etcd at $1 answers (or its process $2 died)
serving() {
  until "$ETCD/etcdctl" --endpoints "$1" endpoint health >/dev/null 2>&1; do
    kill -0 "$2" || return 1
    sleep 0.05
  done
}
restore_and_start() {
  restore_alone "$1"
  local port peer; port=$(cpb_free_port); peer=$(cpb_free_port)
  "$ETCD/etcd" --name cp-1 --data-dir "$WORK/alone" --listen-client-urls "http://127.0.0.1:$port" \
    --advertise-client-urls "http://127.0.0.1:$port" --listen-peer-urls "http://127.0.0.1:$peer" \
    --initial-cluster cp-1=http://127.0.0.1:1 --initial-advertise-peer-urls http://127.0.0.1:1 \
    --quota-backend-bytes 8589934592 >"$WORK/alone.log" 2>&1 &
  local pid=$!
  serving "http://127.0.0.1:$port" "$pid"
  kill "$pid"; wait "$pid" || true
}
# what an operator types: decrypt and unpack the bundle, restore its snapshot, start etcd
by_hand() {
  rm -rf "$WORK/manual"; mkdir -p "$WORK/manual"
  age -d -i "$KEY" "$BUNDLE" | tar -x $TARZ -C "$WORK/manual"
  restore_and_start "$WORK/manual/etcd/snapshot.db"
}
# etcd's own way to add a member: member add, then the new member started until it serves
# the leader's revision
join_by_hand() {
  rm -rf "$WORK/joined"
  local port out ic id pid rev
  port=$(cpb_free_port)
  out=$("$ETCD/etcdctl" --endpoints "$EP" member add cp-3 --peer-urls "http://127.0.0.1:$PEER3")
  ic=$(sed -nE 's/^ETCD_INITIAL_CLUSTER="(.*)"$/\1/p' <<<"$out")
  id=$(sed -nE 's/^Member ([0-9a-f]+) added.*/\1/p' <<<"$out")
  "$ETCD/etcd" --name cp-3 --data-dir "$WORK/joined" --listen-client-urls "http://127.0.0.1:$port" \
    --advertise-client-urls "http://127.0.0.1:$port" --listen-peer-urls "http://127.0.0.1:$PEER3" \
    --initial-advertise-peer-urls "http://127.0.0.1:$PEER3" --initial-cluster "$ic" \
    --initial-cluster-state existing --quota-backend-bytes 8589934592 >"$WORK/joined.log" 2>&1 &
  pid=$!
  rev=$("$ETCD/etcdctl" --endpoints "$EP" endpoint status -w json | python3 -c 'import json,sys;print(json.load(sys.stdin)[0]["Status"]["header"]["revision"])')
  until [ "$("$ETCD/etcdctl" --endpoints "http://127.0.0.1:$port" endpoint status -w json 2>/dev/null | python3 -c 'import json,sys;print(json.load(sys.stdin)[0]["Status"]["header"]["revision"])' 2>/dev/null)" = "$rev" ]; do
    kill -0 "$pid" || return 1
    sleep 0.05
  done
  echo "$pid $id" >"$WORK/joined.ids"
}
# not measured: the member removed (etcd refuses for ~5 s after a join) while it still runs —
# a stopped voting member of two would take the quorum with it — then stopped
join_cleanup() {
  local pid id
  read -r pid id <"$WORK/joined.ids"
  for _ in $(seq 1 100); do
    "$ETCD/etcdctl" --endpoints "$EP" member remove "$id" >/dev/null 2>&1 && break
    sleep 0.2
  done
  kill "$pid" 2>/dev/null || true
}
export ETCD WORK EP KEY BUNDLE TARZ PEER3
: >"$WORK/times"
export -f restore_alone serving restore_and_start by_hand join_by_hand cpb_free_port
# Every input in the page cache before each contender (this VM's balloon evicts cache at will).
warm() { cat "$WORK/snap.db" "$WORK"/store/*/*/*.cpb >/dev/null; }
for _ in $(seq 1 "$ROUNDS"); do
  warm
  cpb_measure etcdutl-start bash -c 'restore_and_start "$WORK/snap.db"'
  warm
  cpb_measure by-hand bash -c by_hand
  warm
  cpb_measure cpbackup "$BIN" --host-root "$ROOT" restore --latest --yes --log-format json --identity "$KEY" \
    --store "$WORK/store" --etcdutl "$ETCD/etcdutl" --state-dir "$WORK/state"
  # where cpbackup's time went, and its outage window (etcd stopped -> serving), from its log
  python3 - "$WORK/last.err" >>"$WORK/times" <<'PY'
import json, sys
outage, down, rss = 0.0, False, 0
for line in open(sys.argv[1]):
    if not line.startswith("{"):
        continue
    r = json.loads(line)
    m, sec = r.get("message", ""), r.get("seconds")
    name = ("unpack" if m.startswith("unpacked and verified") else
            "etcdutl" if m.startswith("restore the snapshot") else
            "stop" if m.startswith("stop etcd") else
            "serve" if m.startswith("wait until etcd") else None)
    if name:
        print("phase-%s %s 0" % (name, sec))
    if down and sec is not None and r.get("step"):
        outage += float(sec)
    if m.startswith("stop etcd"):
        down = True
    if m.startswith("wait until etcd"):
        down = False
    if m == "restore finished":
        rss = r.get("peak_rss_kib", 0)
print("outage %.3f 0" % outage)
print("cpbackup-self 0 %d" % rss)
PY
  # etcd's own first: right after a member joined, etcd refuses another for a few seconds
  cpb_measure join-by-hand bash -c join_by_hand
  join_cleanup
  cpb_measure rejoin "$BIN" --host-root "$ROOT2" restore --rejoin --etcd-endpoint "$EP" --yes -q \
    --state-dir "$WORK/state2"
  # back to the original data for the next round (not measured)
  "$BIN" --host-root "$ROOT2" restore --rollback --yes -q --state-dir "$WORK/state2" >/dev/null
  "$BIN" --host-root "$ROOT" restore --rollback --yes -q --state-dir "$WORK/state" >/dev/null
done

python3 - "$WORK/times" "$SIZE" "$KEYS" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
med = lambda n: statistics.median(float(r[1]) for r in rows if r[0] == n)
rss = lambda n: max(int(r[2]) for r in rows if r[0] == n) / 1024
print("\nsnapshot %.0f MiB, %s keys; medians" % (int(sys.argv[2]) / 2**20, sys.argv[3]))
print("%-52s %8s %10s" % ("", "seconds", "peak RSS"))
row = lambda what, n: print("%-52s %8.2f %7.0f MiB" % (what, med(n), rss(n)))
row("etcdutl snapshot restore + etcd until it serves", "etcdutl-start")
print("%-52s %8.2f" % ("cpbackup outage: etcd stopped -> serving", med("outage")))
row("by hand: age -d | tar -x, etcdutl restore, etcd", "by-hand")
row("cpbackup restore --yes (bundle -> etcd serving)", "cpbackup")
print("%-52s %8s %7.0f MiB" % ("  cpbackup itself (without etcdutl, its child)", "", rss("cpbackup-self")))
for p, what in [("unpack", "fetch, decrypt, decompress, verify, stage"), ("stop", "stop etcd"),
                ("etcdutl", "etcdutl snapshot restore (+ revision bump)"), ("serve", "etcd start until it serves")]:
    print("%-52s %8.2f" % ("  " + what, med("phase-" + p)))
row("etcd's own: member add + new member until in sync", "join-by-hand")
row("cpbackup restore --rejoin", "rejoin")
print("1. outage window / etcdutl restore + start: %.2fx (goal <= 1.1)" % (med("outage") / med("etcdutl-start")))
print("2. whole restore / by hand:                 %.2fx (goal <= 0.7)" % (med("cpbackup") / med("by-hand")))
print("3. rejoin / etcd's own member sync:         %.2fx (goal <= 1.5)" % (med("rejoin") / med("join-by-hand")))
PY
