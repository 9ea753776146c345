#!/usr/bin/env bash
# The main job, end to end, on a throwaway local etcd: fill it with Kubernetes-like objects,
# back it up encrypted to a local store, list, verify, inspect, extract one namespace offline,
# then restore the snapshot into a scratch directory, start etcd on it and prove every key came
# back. Cleans up after itself.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
cpb_install_all

cpb_log "building cpbackup"
cargo build -q
BIN=$PWD/target/debug/cpbackup
ETCD=$CPBACKUP_TEST_ETCD35_DIR
WORK=$(mktemp -d /tmp/cpbackup-demo.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
ctl() { ETCDCTL_API=3 "$ETCD/etcdctl" --endpoints "$1" "${@:2}"; }

cpb_log "starting a throwaway etcd 3.5 on 127.0.0.1"
PORT=$(cpb_free_port)
EP=http://127.0.0.1:$PORT
PIDS+=("$(cpb_start_etcd "$ETCD" "$WORK/etcd" "$PORT" "$WORK/etcd.log")")

cpb_log "filling it with Kubernetes-like objects (namespaces shop and billing)"
for ns in shop billing; do
  ctl "$EP" put "/registry/namespaces/$ns" "{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"name\":\"$ns\"}}" >/dev/null
  for i in $(seq 1 20); do
    ctl "$EP" put "/registry/configmaps/$ns/settings-$i" \
      "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"settings-$i\",\"namespace\":\"$ns\"},\"data\":{\"n\":\"$i\"}}" >/dev/null
  done
  ctl "$EP" put "/registry/deployments/$ns/web" \
    "{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\",\"metadata\":{\"name\":\"web\",\"namespace\":\"$ns\"},\"spec\":{\"replicas\":3}}" >/dev/null
done
ctl "$EP" put /registry/configmaps/shop/settings-1 '{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"settings-1","namespace":"shop"},"data":{"n":"updated"}}' >/dev/null
ctl "$EP" del /registry/configmaps/billing/settings-20 >/dev/null

cpb_log "laying out a kubeadm-style control-plane host (certificates and static pod manifests)"
HOST=$WORK/host
mkdir -p "$HOST/etc/kubernetes/pki/etcd" "$HOST/etc/kubernetes/manifests"
echo "demo CA" >"$HOST/etc/kubernetes/pki/etcd/ca.crt"
echo "service-account signing key" >"$HOST/etc/kubernetes/pki/sa.key" && chmod 600 "$HOST/etc/kubernetes/pki/sa.key"
for m in etcd kube-apiserver kube-controller-manager kube-scheduler; do echo "kind: Pod # $m" >"$HOST/etc/kubernetes/manifests/$m.yaml"; done

cpb_log "cpbackup keygen: an age identity (keep it off the node) and its recipient"
"$BIN" keygen --out "$WORK/recovery.key" | tee "$WORK/recipient.txt"

cpb_log "cpbackup backup: snapshot + static pod resources → tar → zstd → age → store"
"$BIN" --host-root "$HOST" backup --etcd-endpoint "$EP" --recipient "$(cat "$WORK/recipient.txt")" \
  --store "$WORK/store" --state-dir "$WORK/state" --cluster-name demo --node-name master-0

cpb_log "cpbackup list (needs no key)"
"$BIN" list --store "$WORK/store"

cpb_log "cpbackup verify --latest: decrypt, check every hash, the sha256 trailer and the bbolt meta pages"
"$BIN" verify --store "$WORK/store" --identity "$WORK/recovery.key" --latest

cpb_log "cpbackup inspect: what the backed-up snapshot holds, per namespace, without any etcd"
"$BIN" inspect --store "$WORK/store" --identity "$WORK/recovery.key" --latest --by namespace

cpb_log "cpbackup extract: namespace shop from the backup, offline, one re-appliable file per object"
"$BIN" extract --store "$WORK/store" --identity "$WORK/recovery.key" --latest --namespace shop --out "$WORK/shop"
ls "$WORK/shop" | head -5
cat "$WORK/shop/"*-configmap-settings-1.yaml
grep -q 'updated' "$WORK/shop/"*-configmap-settings-1.yaml || { echo "extract did not return the newest value" >&2; exit 1; }

cpb_log "restoring: the age CLI decrypts, tar unpacks, etcdutl restores into a scratch directory"
BUNDLE=$(find "$WORK/store" -name '*.cpb')
mkdir -p "$WORK/unpacked"
age -d -i "$WORK/recovery.key" "$BUNDLE" | zstd -dq | tar -xf - -C "$WORK/unpacked"
ls -l "$WORK/unpacked" "$WORK/unpacked/etcd"
"$ETCD/etcdutl" snapshot restore "$WORK/unpacked/etcd/snapshot.db" --data-dir "$WORK/restored" >/dev/null 2>&1
PORT2=$(cpb_free_port)
EP2=http://127.0.0.1:$PORT2
PIDS+=("$(cpb_start_etcd "$ETCD" "$WORK/restored" "$PORT2" "$WORK/etcd-restored.log")")

cpb_log "namespace shop, read back from the restored etcd"
ctl "$EP2" get --prefix /registry/ --keys-only | grep '/shop' | sed '/^$/d'

cpb_log "proving every key and value came back"
ctl "$EP" get --prefix /registry/ -w json | python3 -c 'import json,sys;print(json.dumps(sorted((k["key"],k["value"]) for k in json.load(sys.stdin)["kvs"])))' >"$WORK/before.json"
ctl "$EP2" get --prefix /registry/ -w json | python3 -c 'import json,sys;print(json.dumps(sorted((k["key"],k["value"]) for k in json.load(sys.stdin)["kvs"])))' >"$WORK/after.json"
if cmp -s "$WORK/before.json" "$WORK/after.json"; then
  echo "OK: $(python3 -c 'import json,sys;print(len(json.load(open(sys.argv[1]))))' "$WORK/before.json") keys identical in the original and the restored etcd"
else
  echo "MISMATCH between the original and the restored etcd" >&2
  exit 1
fi
