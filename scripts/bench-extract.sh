#!/usr/bin/env bash
# Benchmark of namespace extraction (issue 6), in one run, as a ratio: `cpbackup extract
# snap.db --namespace NS` (to one YAML file; and, second, to a directory with one file per
# object) against the way it is done without cpbackup: restore the
# snapshot into a scratch etcd (`etcdutl snapshot restore`), start it, wait until it serves, and
# `etcdctl get --prefix /registry/<resource>/NS/ -w json` for every resource type the namespace
# has (goal <= 0.05x). The keyspace holds Kubernetes objects as the API server stores them:
# ConfigMaps and Secrets as protobuf envelopes, the other kinds as JSON, in 211 namespaces.
# Median of ROUNDS runs; peak RSS from GNU time. --baseline BIN also runs another cpbackup binary
# (an earlier release) on the same namespace and on a decode-heavy prefix dump (every ConfigMap),
# and reports new / baseline: what a change to the decoder costs.
# Usage: scripts/bench-extract.sh [--keys 520000] [--value-bytes 1900] [--rounds 3]
#        [--keep-snapshot FILE] (copy the seeded snapshot there) [--snapshot FILE] (reuse one)
#        [--baseline BIN]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
NS=ns-7
KEEP=
REUSE=
BASE=
cpb_bench_args 2,14 keys=KEYS:520000 value-bytes=VALUE:1900 rounds=ROUNDS:3 keep-snapshot=KEEP snapshot=REUSE baseline=BASE -- "$@"
cpb_bench_setup bench-extract
ETCD=$CPBACKUP_TEST_ETCD35_DIR
export ETCDCTL_API=3
if [ -n "${REUSE:-}" ]; then
  cp "$REUSE" "$WORK/snap.db"
else
cpb_bench_etcd

cpb_log "seeding $KEYS Kubernetes objects of ~$VALUE bytes (1000 per txn)"
cpb_seed_etcd "$ETCD" "$EP" "$KEYS" "$VALUE" kube
"$ETCD/etcdctl" --endpoints "$EP" snapshot save "$WORK/snap.db" >/dev/null 2>&1
[ -z "${KEEP:-}" ] || cp "$WORK/snap.db" "$KEEP"
fi
SIZE=$(stat -c %s "$WORK/snap.db")
cpb_log "snapshot: $((SIZE / 1024 / 1024)) MiB"

# Without cpbackup: a scratch etcd from the snapshot, then one range read per resource type.
without_cpbackup() {
  rm -rf "$WORK/scratch" "$WORK/by-etcdctl"
  mkdir -p "$WORK/by-etcdctl"
  "$ETCD/etcdutl" snapshot restore "$WORK/snap.db" --data-dir "$WORK/scratch" --name s \
    --initial-cluster "s=http://127.0.0.1:$SPEER" --initial-advertise-peer-urls "http://127.0.0.1:$SPEER" >/dev/null 2>&1
  "$ETCD/etcd" --name s --data-dir "$WORK/scratch" --listen-client-urls "http://127.0.0.1:$SPORT" \
    --advertise-client-urls "http://127.0.0.1:$SPORT" --listen-peer-urls "http://127.0.0.1:$SPEER" \
    --initial-advertise-peer-urls "http://127.0.0.1:$SPEER" --initial-cluster "s=http://127.0.0.1:$SPEER" \
    >"$WORK/scratch.log" 2>&1 &
  local pid=$!
  until "$ETCD/etcdctl" --endpoints "http://127.0.0.1:$SPORT" endpoint health >/dev/null 2>&1; do sleep 0.05; done
  for r in configmaps secrets pods events replicasets leases; do
    "$ETCD/etcdctl" --endpoints "http://127.0.0.1:$SPORT" get --prefix "/registry/$r/$NS/" -w json >"$WORK/by-etcdctl/$r.json"
  done
  kill "$pid"; wait "$pid" 2>/dev/null || true
}
SPORT=$(cpb_free_port)
SPEER=$(cpb_free_port)
export -f without_cpbackup
export ETCD WORK NS SPORT SPEER BIN BASE
: >"$WORK/times"
for _ in $(seq 1 "$ROUNDS"); do
  cpb_measure etcd bash -c without_cpbackup
  cpb_measure cpbackup bash -c '"$BIN" extract "$WORK/snap.db" --namespace "$NS" --raw >"$WORK/ns.yaml"'
  rm -rf "$WORK/out"
  cpb_measure cpbackup-dir "$BIN" extract "$WORK/snap.db" --namespace "$NS" --raw --out "$WORK/out"
  if [ -n "$BASE" ]; then
    cpb_measure base "$BASE" extract "$WORK/snap.db" --namespace "$NS" --raw --out "$WORK/out-base-$RANDOM"
    cpb_measure prefix bash -c '"$BIN" extract "$WORK/snap.db" --prefix /registry/configmaps/ --raw >"$WORK/cm.yaml"'
    cpb_measure base-prefix bash -c '"$BASE" extract "$WORK/snap.db" --prefix /registry/configmaps/ --raw >"$WORK/cm-base.yaml"'
  fi
done
GOT=$(find "$WORK/out" -type f | wc -l)
WANT=$(cat "$WORK"/by-etcdctl/*.json | python3 -c 'import json,sys; print(sum(len(json.loads(l).get("kvs",[])) for l in sys.stdin if l.strip()))')
cpb_log "objects: cpbackup wrote $GOT files, etcdctl returned $WANT keys"
[ "$GOT" = "$WANT" ] || { echo "extraction returned $GOT objects, etcd $WANT" >&2; exit 1; }

python3 - "$WORK/times" "$SIZE" "$KEYS" "$NS" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
med = lambda n: statistics.median(float(r[1]) for r in rows if r[0] == n)
rss = lambda n: max(int(r[2]) for r in rows if r[0] == n) / 1024
e, c, d = med("etcd"), med("cpbackup"), med("cpbackup-dir")
print("\nsnapshot %.0f MiB, %s keys, namespace %s" % (int(sys.argv[2]) / 2**20, sys.argv[3], sys.argv[4]))
print("%-58s %8s %10s" % ("", "seconds", "peak RSS"))
print("%-58s %8.2f %7.0f MiB" % ("etcdutl restore + etcd start + etcdctl get per resource", e, rss("etcd")))
print("%-58s %8.2f %7.0f MiB" % ("cpbackup extract --namespace > ns.yaml", c, rss("cpbackup")))
print("%-58s %8.2f %7.0f MiB" % ("cpbackup extract --namespace --out DIR (file per object)", d, rss("cpbackup-dir")))
print("cpbackup / without cpbackup: %.3fx (goal <= 0.05); with a file per object: %.3fx" % (c / e, d / e))
print("(cpbackup's peak RSS is the snapshot file mapped read-only: page cache, not heap)")
if any(r[0] == "base" for r in rows):
    b, p, bp = med("base"), med("prefix"), med("base-prefix")
    print("%-58s %8.2f %7.0f MiB" % ("baseline binary: extract --namespace --out DIR", b, rss("base")))
    print("%-58s %8.2f %7.0f MiB" % ("cpbackup extract --prefix /registry/configmaps/", p, rss("prefix")))
    print("%-58s %8.2f %7.0f MiB" % ("baseline binary: the same prefix", bp, rss("base-prefix")))
    print("this binary / baseline: namespace %.3fx, every ConfigMap %.3fx" % (d / b, p / bp))
PY
