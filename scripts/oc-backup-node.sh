#!/usr/bin/env bash
# Takes a cpbackup backup on OpenShift control-plane nodes through `oc debug node/…`, for
# ad-hoc backups (before an upgrade, say) without installing anything on the nodes.
#
# Usage: scripts/oc-backup-node.sh (--all | NODE...) [--image IMAGE] [-- BACKUP_ARGS...]
#   --all          every control-plane node (oc get nodes -l node-role.kubernetes.io/master)
#   NODE...        these nodes (names as `oc get nodes` prints them)
#   --image IMAGE  run the cpbackup image in the debug pod with --host-root /host; without it,
#                  run the host's own /usr/local/bin/cpbackup under `chroot /host`
#   BACKUP_ARGS    passed to `cpbackup backup` (e.g. --store s3://… --recipient age1…);
#                  settings from /etc/cpbackup/config.toml on the node apply as well (with
#                  --image too: under --host-root the node's config is the default)
# The nodes are backed up one after the other; the exit code is 1 if any of them failed, and
# the failed nodes are named at the end. Needs `oc` logged in as a cluster admin.
set -uo pipefail
IMAGE=
ALL=0
NODES=()
ARGS=()
usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case $1 in
    --all) ALL=1; shift ;;
    --image) IMAGE=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    --) shift; ARGS=("$@"); break ;;
    -*) echo "oc-backup-node.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) NODES+=("$1"); shift ;;
  esac
done
command -v oc >/dev/null || { echo "oc-backup-node.sh: oc is not on PATH" >&2; exit 2; }
if [ "$ALL" = 1 ]; then
  mapfile -t NODES < <(oc get nodes -l node-role.kubernetes.io/master -o name | sed 's|^node/||')
fi
[ ${#NODES[@]} -gt 0 ] || { echo "oc-backup-node.sh: no node given (NODE... or --all; see --help)" >&2; exit 2; }
FAILED=()
for n in "${NODES[@]}"; do
  echo "==> backing up $n" >&2
  if [ -n "$IMAGE" ]; then
    oc debug "node/$n" --image="$IMAGE" -- cpbackup --host-root /host backup "${ARGS[@]}"
  else
    oc debug "node/$n" -- chroot /host /usr/local/bin/cpbackup backup "${ARGS[@]}"
  fi
  rc=$?
  [ "$rc" = 0 ] || { echo "==> $n failed (exit $rc)" >&2; FAILED+=("$n"); }
done
if [ ${#FAILED[@]} -gt 0 ]; then
  echo "oc-backup-node.sh: the backup failed on: ${FAILED[*]}" >&2
  exit 1
fi
echo "oc-backup-node.sh: ${#NODES[@]} node(s) backed up" >&2
