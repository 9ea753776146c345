#!/usr/bin/env bash
# The main job end to end, for real, on throwaway things: a kubeadm-shaped control-plane host
# root whose etcd is run by a stand-in kubelet, filled with Kubernetes-like objects; `cpbackup
# doctor`; an encrypted backup to a local store; list, verify, inspect, extract one namespace
# offline; then the real `cpbackup restore` (plan, journaled run, proof, rollback). Cleans up
# after itself.
#
# First run on a fresh 2-core Debian machine: about 4 minutes (1 installing Debian's etcd, age
# and protoc, 3 downloading crates and building cpbackup); later runs about 6 seconds.
# Usage: scripts/demo.sh          (CPBACKUP_DEMO_KEEP=1 keeps the work directory to look at)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
cpb_log "the first run takes about 4 minutes (Debian packages, then the build); later runs seconds"
cpb_install_demo

cpb_log "building cpbackup (profile demo: quickest to build)"
cargo build -q --profile demo --bin cpbackup
BIN=$PWD/target/demo/cpbackup
export ETCDCTL_API=3
export PATH=$CPB_ETCD_BIN:$PATH # the restore takes the node's etcdctl/etcdutl from PATH
WORK=$(mktemp -d /tmp/cpbackup-demo.XXXXXX)
HOST=$WORK/host
KUBELET=""
cleanup() {
  rm -f "$WORK/kubelet.on"
  [ -z "$KUBELET" ] || wait "$KUBELET" 2>/dev/null || true
  if [ -n "${CPBACKUP_DEMO_KEEP:-}" ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
# The commands as a user types them on the node; the demo only adds where its host root is.
step() { printf '\n\033[1m── %s\033[0m\n' "$1"; }
show() { printf '\033[2m$ %s\033[0m\n' "$*"; }
cpbackup() { show "cpbackup $*"; "$BIN" --host-root "$HOST" "$@"; }
export CPBACKUP_STATE_DIR=$WORK/state CPBACKUP_CONFIG=$WORK/cpbackup.toml
: >"$CPBACKUP_CONFIG"

# A kubeadm control-plane host under $HOST: pki, kubeconfigs, static pod manifests; etcd's
# manifest runs a real etcd on 127.0.0.1 (plain HTTP: a demo has no certificates to offer).
CLIENT=$(cpb_free_port)
PEER=$(cpb_free_port)
EP=http://127.0.0.1:$CLIENT
K=$HOST/etc/kubernetes
mkdir -p "$K/pki/etcd" "$K/manifests" "$HOST/var/lib"
echo "stand-in etcd CA" >"$K/pki/etcd/ca.crt"
(umask 077 && echo "stand-in service-account key" >"$K/pki/sa.key")
echo "kind: Config # the node's admin kubeconfig" >"$K/admin.conf"
cat >"$K/manifests/etcd.yaml" <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: etcd
  namespace: kube-system
spec:
  containers:
  - command:
    - etcd
    - --name=cp-0
    - --data-dir=/var/lib/etcd
    - --listen-client-urls=$EP
    - --advertise-client-urls=$EP
    - --listen-peer-urls=http://127.0.0.1:$PEER
    - --initial-advertise-peer-urls=http://127.0.0.1:$PEER
    - --initial-cluster=cp-0=http://127.0.0.1:$PEER
    image: registry.k8s.io/etcd:3.4.23-0
    name: etcd
EOF
printf 'apiVersion: v1\nkind: Pod\nmetadata:\n  name: kube-apiserver\n  namespace: kube-system\n' \
  >"$K/manifests/kube-apiserver.yaml"

# The stand-in kubelet: while etcd's manifest is in place, etcd runs with its flags (host paths
# under $HOST); when the manifest is moved away, etcd is stopped, as the kubelet does.
kubelet() {
  local manifest=$K/manifests/etcd.yaml pid="" args
  while [ -e "$WORK/kubelet.on" ]; do
    if [ -f "$manifest" ]; then
      if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then
        mapfile -t args < <(sed -n 's/^ *- \(--.*\)$/\1/p' "$manifest" | sed "s#=/#=$HOST/#")
        "$CPB_ETCD_BIN/etcd" "${args[@]}" >>"$WORK/etcd.log" 2>&1 &
        pid=$!
      fi
    elif [ -n "$pid" ]; then
      kill "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
      pid=""
    fi
    sleep 0.1 # the kubelet's sync loop
  done
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
}
touch "$WORK/kubelet.on"
kubelet &
KUBELET=$!
ctl() { "$CPB_ETCD_BIN/etcdctl" --endpoints "$EP" "$@"; }
for _ in $(seq 1 300); do ctl endpoint health >/dev/null 2>&1 && break; sleep 0.1; done
ctl endpoint health >/dev/null 2>&1 || { cat "$WORK/etcd.log" >&2; exit 1; }
revision() { ctl endpoint status -w json | grep -o '"revision":[0-9]*' | cut -d: -f2; }
dump() { ctl get --prefix /registry/; }

step "1. a kubeadm-shaped host at $HOST, its etcd filled with two namespaces"
for ns in shop billing; do
  ctl put "/registry/namespaces/$ns" "{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"name\":\"$ns\"}}" >/dev/null
  for i in $(seq 1 20); do
    ctl put "/registry/configmaps/$ns/settings-$i" \
      "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"settings-$i\",\"namespace\":\"$ns\"},\"data\":{\"n\":\"$i\"}}" >/dev/null
  done
  ctl put "/registry/deployments/$ns/web" \
    "{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\",\"metadata\":{\"name\":\"web\",\"namespace\":\"$ns\"},\"spec\":{\"replicas\":3}}" >/dev/null
done
ctl put /registry/configmaps/shop/settings-1 '{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"settings-1","namespace":"shop"},"data":{"n":"updated"}}' >/dev/null
ctl del /registry/configmaps/billing/settings-20 >/dev/null
echo "$(dump | wc -l | awk '{print $1/2}') keys at revision $(revision)"

step "2. an age identity (keep it OFF the node) and its recipient (safe to put on every node)"
show "cpbackup keygen --out recovery.key"
"$BIN" keygen --out "$WORK/recovery.key" >"$WORK/recipient.txt"
cat "$WORK/recipient.txt"

step "3. doctor: what a backup and a restore will need, checked first (WARN: no timer here, no backup yet)"
cpbackup doctor --etcd-endpoint "$EP" --recipient "$(cat "$WORK/recipient.txt")" \
  --store "$WORK/store" --cluster-name demo --node-name cp-0

step "4. backup: snapshot + static pod resources → tar → zstd → age → store"
cpbackup backup --etcd-endpoint "$EP" --recipient "$(cat "$WORK/recipient.txt")" \
  --store "$WORK/store" --cluster-name demo --node-name cp-0
dump >"$WORK/at-backup.txt"
BACKUP_REV=$(revision)

step "5. list: what the store holds (needs no key)"
cpbackup list --store "$WORK/store"

step "6. verify: decrypt, check every hash, the snapshot's own checksum and its bbolt pages"
cpbackup verify --store "$WORK/store" --identity "$WORK/recovery.key" --latest

step "7. inspect: what the snapshot holds per namespace, without any etcd"
cpbackup inspect --store "$WORK/store" --identity "$WORK/recovery.key" --latest --by namespace

step "8. extract: namespace shop, offline, one re-appliable file per object"
cpbackup extract --store "$WORK/store" --identity "$WORK/recovery.key" --latest --namespace shop --out "$WORK/shop"
ls "$WORK/shop" | head -3
grep -q updated "$WORK/shop/"*-configmap-settings-1.yaml || { echo "extract did not return the newest value" >&2; exit 1; }

step "9. life goes on after the backup: a write and a delete the restore will undo"
ctl put /registry/configmaps/shop/written-after-backup '{"kind":"ConfigMap"}' >/dev/null
ctl del /registry/deployments/billing/web >/dev/null
dump >"$WORK/later.txt"
echo "now $(($(wc -l <"$WORK/later.txt") / 2)) keys at revision $(revision)"

step "10. restore --dry-run: the plan, checked against the bundle; nothing on the host changes"
cpbackup restore --identity "$WORK/recovery.key" --store "$WORK/store" --latest --dry-run

step "11. restore: every step journaled, so it can be continued or rolled back"
cpbackup restore --identity "$WORK/recovery.key" --store "$WORK/store" --latest --yes

step "12. proof: every key and value as at the backup, at a revision above any a client saw"
dump >"$WORK/restored.txt"
if ! cmp -s "$WORK/at-backup.txt" "$WORK/restored.txt"; then
  echo "MISMATCH between the backed-up and the restored etcd:" >&2
  diff "$WORK/at-backup.txt" "$WORK/restored.txt" | head >&2
  exit 1
fi
REV=$(revision)
[ "$REV" -gt "$BACKUP_REV" ] || { echo "revision $REV is not above $BACKUP_REV" >&2; exit 1; }
echo "OK: $(($(wc -l <"$WORK/restored.txt") / 2)) keys identical to the backup; revision $REV (was $BACKUP_REV), so watchers relist"
OLD=$(sed -n 's/.*"to": *"\([^"]*\)".*/\1/p' "$CPBACKUP_STATE_DIR/restore/journal.json" | grep -m1 etcd || true)
[ -n "$OLD" ] && [ -f "$OLD/member/snap/db" ] || { echo "the old data directory was not kept" >&2; exit 1; }
echo "OK: the old data directory is kept at $OLD"

step "13. restore --rollback: the node exactly as before the restore"
cpbackup restore --rollback --yes
for _ in $(seq 1 300); do dump 2>/dev/null | cmp -s - "$WORK/later.txt" && break; sleep 0.1; done
dump | cmp -s - "$WORK/later.txt" || { echo "the rollback did not bring the later data back" >&2; exit 1; }
echo "OK: etcd serves the writes made after the backup again"
printf '\nDone. Next: README.md (install on a node), docs/restore.md (the restore, step by step).\n'
