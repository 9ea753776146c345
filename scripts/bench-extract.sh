#!/usr/bin/env bash
# Benchmark of namespace extraction (issue 6), in one run, as a ratio: `cpbackup extract
# snap.db --namespace NS` (to one YAML file; and, second, to a directory with one file per
# object) against the way it is done without cpbackup: restore the
# snapshot into a scratch etcd (`etcdutl snapshot restore`), start it, wait until it serves, and
# `etcdctl get --prefix /registry/<resource>/NS/ -w json` for every resource type the namespace
# has (goal <= 0.05x). The keyspace holds Kubernetes objects as the API server stores them:
# ConfigMaps and Secrets as protobuf envelopes, the other kinds as JSON, in 211 namespaces.
# Median of ROUNDS runs; peak RSS from GNU time.
# Usage: scripts/bench-extract.sh [--keys 520000] [--value-bytes 1900] [--rounds 3]
#        [--keep-snapshot FILE] (copy the seeded snapshot there) [--snapshot FILE] (reuse one)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
KEYS=520000
VALUE=1900
ROUNDS=3
NS=ns-7
while [ $# -gt 0 ]; do
  case $1 in
    --keys) KEYS=$2; shift 2 ;;
    --value-bytes) VALUE=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --keep-snapshot) KEEP=$2; shift 2 ;;
    --snapshot) REUSE=$2; shift 2 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
cpb_bench_setup bench-extract
ETCD=$CPBACKUP_TEST_ETCD35_DIR
export ETCDCTL_API=3
if [ -n "${REUSE:-}" ]; then
  cp "$REUSE" "$WORK/snap.db"
else
PORT=$(cpb_free_port)
EP=http://127.0.0.1:$PORT
PIDS+=("$(CPB_ETCD_EXTRA="--max-txn-ops 2000 --max-request-bytes 16777216" cpb_start_etcd "$ETCD" "$WORK/etcd" "$PORT" "$WORK/etcd.log")")

cpb_log "seeding $KEYS Kubernetes objects of ~$VALUE bytes (1000 per txn)"
python3 - "$KEYS" "$VALUE" "$ETCD/etcdctl" "$EP" <<'PY'
import base64, json, random, subprocess, sys
from concurrent.futures import ThreadPoolExecutor
n, size, ctl, ep = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
kinds = ["configmaps", "secrets", "pods", "events", "replicasets", "leases"]

def varint(v):
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)

def field(num, payload):  # length-delimited field
    return varint(num << 3 | 2) + varint(len(payload)) + payload

def protobuf(kind, name, ns, uid, blob):
    meta = field(1, name.encode()) + field(3, ns.encode()) + field(5, uid.encode()) \
        + field(8, varint(1 << 3) + varint(1700000000))
    if kind == "ConfigMap":
        body = field(1, meta) + field(2, field(1, b"blob") + field(2, blob.encode()))
    else:
        body = field(1, meta) + field(2, field(1, b"blob") + field(2, blob.encode())) + field(3, b"Opaque")
    unknown = field(1, field(1, b"v1") + field(2, kind.encode())) + field(2, body) + field(3, b"") + field(4, b"")
    return b"k8s\0" + unknown

def value(kind, name, ns, uid, blob):
    if kind == "configmaps":
        return protobuf("ConfigMap", name, ns, uid, blob)
    if kind == "secrets":
        return protobuf("Secret", name, ns, uid, blob)
    api, k = {"pods": ("v1", "Pod"), "events": ("v1", "Event"),
              "replicasets": ("apps/v1", "ReplicaSet"), "leases": ("coordination.k8s.io/v1", "Lease")}[kind]
    return json.dumps({"apiVersion": api, "kind": k, "metadata": {"name": name, "namespace": ns, "uid": uid},
                       "spec": {"blob": blob}}).encode()

def batch(start):
    r = random.Random(start)
    kvs = []
    for i in range(start, min(start + 1000, n)):
        kind, ns, name = kinds[i % len(kinds)], "ns-%d" % (i % 211), "obj-%d" % i
        blob = ("%x" % r.getrandbits(size * 4 + 8))[:size]
        kvs.append(("/registry/%s/%s/%s" % (kind, ns, name), value(kind, name, ns, "uid-%d" % i, blob)))
    # etcdctl cannot pass binary values (the NUL in k8s\0): use etcd's JSON gateway
    import urllib.request
    ops = [{"requestPut": {"key": base64.b64encode(k.encode()).decode(), "value": base64.b64encode(v).decode()}}
           for k, v in kvs]
    req = urllib.request.Request(ep + "/v3/kv/txn", data=json.dumps({"success": ops}).encode(),
                                 headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req).read()
with ThreadPoolExecutor(2) as ex:
    list(ex.map(batch, range(0, n, 1000)))
PY
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
export ETCD WORK NS SPORT SPEER BIN
: >"$WORK/times"
for _ in $(seq 1 "$ROUNDS"); do
  cpb_measure etcd bash -c without_cpbackup
  cpb_measure cpbackup bash -c '"$BIN" extract "$WORK/snap.db" --namespace "$NS" --raw >"$WORK/ns.yaml"'
  rm -rf "$WORK/out"
  cpb_measure cpbackup-dir "$BIN" extract "$WORK/snap.db" --namespace "$NS" --raw --out "$WORK/out"
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
PY
