#!/usr/bin/env bash
# Benchmark of `cpbackup backup` against what an operator scripts today, in one run, as ratios.
#
#   floor:      etcdctl snapshot save                          (reading etcd's stream to disk)
#   zstd pipe:  etcdctl snapshot save; zstd -T0 -3 | age -r    (the careful script, as talos-backup)
#   gzip pipe:  etcdctl snapshot save; gzip -c | age -r        (the usual script; gzip -6)
#   cpbackup:   cpbackup backup --static-pods none             (stream → tar → zstd → age → store)
#   cpb-gzip:   the same with --compression gzip               (for comparison)
#
# etcd 3.5 is seeded with real Kubernetes objects (the serialization fixtures in ../shared: every
# built-in type in protobuf, a quarter as JSON like custom resources, each copy with its own
# name, namespace and uid, the other placeholder strings from a small vocabulary, so that it
# compresses like a real cluster) to each database size in SIZES_MIB (default 256 and 1024 MiB). At each
# size every contender runs ROUNDS times, interleaved; median wall time, peak RSS (GNU time) and
# bundle size are reported, then `cpbackup verify` of the zstd and the gzip bundle, and the
# restore's unpack of each (`cpbackup restore` on a kubeadm-shaped root, stopped by its failpoint
# right before its first step: fetched, decrypted, decompressed, verified and staged). Goals
# (issue 17): bundle ≤ 1.0× the zstd pipe's; wall ≤ 1.0× floor and ≤ 0.7× the zstd pipe; peak
# RSS ≤ 64 MiB; verify and unpack of a zstd bundle ≥ 1.5× faster than of a gzip one. The
# "etcd CPU" column is the etcd server's CPU time during each backup: where it equals the wall
# time, etcd producing its snapshot stream on one core was the bound.
#
# --baseline-bin PATH adds the release a user upgrades from (e.g. 3ab8ad1, the last before zstd):
# its own gzip bundle, backed up, verified and unpacked by it, against this release's zstd.
#
# Usage: scripts/bench-backup.sh [--sizes "256 1024"] [--rounds 3] [--level N] [--baseline-bin PATH]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
LEVEL=""
OLD_BIN=""
cpb_bench_args 2,26 "sizes=SIZES_MIB:256 1024" rounds=ROUNDS:3 level=LEVEL baseline-bin=OLD_BIN -- "$@"
cpb_bench_setup bench
[ -n "${CPBACKUP_K8S_FIXTURES:-}" ] || { echo "the Kubernetes serialization fixtures are needed (../shared/fixtures)" >&2; exit 1; }
cpb_bench_etcd
ETCD_PID=${PIDS[-1]}
# measure NAME CMD...: cpb_measure, plus the etcd server's CPU time meanwhile
measure() { cpb_measure_server "$ETCD_PID" "$@"; }
"$BIN" keygen --out "$WORK/key" >"$WORK/recipient" 2>/dev/null
R=$(cat "$WORK/recipient")

zstd_pipe() {
  "$ETCD/etcdctl" --endpoints "$EP" snapshot save "$WORK/zpipe.db" >/dev/null
  zstd -q -T0 -3 -c "$WORK/zpipe.db" | age -r "$R" >"$WORK/zpipe.db.zst.age"
}
gzip_pipe() {
  "$ETCD/etcdctl" --endpoints "$EP" snapshot save "$WORK/gpipe.db" >/dev/null
  gzip -c "$WORK/gpipe.db" | age -r "$R" >"$WORK/gpipe.db.gz.age"
}
# The restore up to its first step (exit 137 at the failpoint): unpack and plan, nothing run.
ROOT=$WORK/root
mkdir -p "$ROOT/etc/kubernetes/manifests" "$ROOT/var/lib"
printf '%s\n' 'apiVersion: v1' 'kind: Pod' 'spec:' '  containers:' '  - command:' '    - etcd' \
  '    - --name=cp-1' '    - --data-dir=/var/lib/etcd' '    - --initial-advertise-peer-urls=http://127.0.0.1:2380' \
  '    - --advertise-client-urls=http://127.0.0.1:2379' '    image: registry.k8s.io/etcd:3.5.15-0' >"$ROOT/etc/kubernetes/manifests/etcd.yaml"
unpack() { # unpack STORE [BIN]
  rm -rf "$WORK/ustate"
  CPBACKUP_RESTORE_FAILPOINT=1:before "${2:-$BIN}" --log-format json --host-root "$ROOT" restore --latest --yes \
    --store "$1" --identity "$WORK/key" --etcdutl "$ETCD/etcdutl" --state-dir "$WORK/ustate" && return 1
  [ $? -eq 137 ]
}
# the unpack step's own seconds and peak RSS, from the restore's log (without the process start,
# the store listing and the plan around it)
unpack_step() {
  python3 - "$WORK/last.err" "$1" >>"$WORK/times" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    if line.startswith("{") and "unpacked and verified" in line:
        f = json.loads(line)
        f = f.get("fields", f)
        print(sys.argv[2], f["seconds"], f.get("peak_rss_kib", 0))
PY
}
export -f zstd_pipe gzip_pipe unpack unpack_step
export ETCD EP WORK R ROOT BIN OLD_BIN

keys=0
for size in $SIZES_MIB; do
  target=$((size * 1024 * 1024 / 3500)) # ~3.5 KiB of database per object
  cpb_log "seeding etcd to a ~${size} MiB database of Kubernetes objects ($target keys)"
  cpb_seed_etcd "$ETCD" "$EP" "$target" 0 fixtures "$keys"
  keys=$target
  : >"$WORK/times"; : >"$WORK/server"
  for round in $(seq 1 "$ROUNDS"); do
    rm -rf "$WORK/store" "$WORK/store-gzip" "$WORK/store-old" "$WORK"/*.db "$WORK"/*.age
    measure floor "$ETCD/etcdctl" --endpoints "$EP" snapshot save "$WORK/floor.db"
    measure zstd_pipe bash -c zstd_pipe
    measure gzip_pipe bash -c gzip_pipe
    measure cpbackup "$BIN" -q backup --static-pods none --etcd-endpoint "$EP" --recipient "$R" \
      --store "$WORK/store" --state-dir "$WORK/state" ${LEVEL:+--compression-level "$LEVEL"}
    measure cpb_gzip "$BIN" -q backup --static-pods none --etcd-endpoint "$EP" --recipient "$R" \
      --store "$WORK/store-gzip" --state-dir "$WORK/state" --compression gzip
    cpb_measure verify_zstd "$BIN" -q verify --store "$WORK/store" --identity "$WORK/key" --latest
    cpb_measure verify_gzip "$BIN" -q verify --store "$WORK/store-gzip" --identity "$WORK/key" --latest
    cpb_measure restore_zstd bash -c 'unpack "$WORK/store"'
    unpack_step unpack_zstd
    cpb_measure restore_gzip bash -c 'unpack "$WORK/store-gzip"'
    unpack_step unpack_gzip
    if [ -n "$OLD_BIN" ]; then
      measure old_backup "$OLD_BIN" -q backup --static-pods none --etcd-endpoint "$EP" --recipient "$R" \
        --store "$WORK/store-old" --state-dir "$WORK/state-old"
      cpb_measure verify_old "$OLD_BIN" -q verify --store "$WORK/store-old" --identity "$WORK/key" --latest
      cpb_measure restore_old bash -c 'unpack "$WORK/store-old" "$OLD_BIN"'
      unpack_step unpack_old
    fi
  done
  db=$(stat -c %s "$WORK/floor.db")
  cpb=$(find "$WORK/store" -name '*.cpb' -printf '%s\n' | head -1)
  cpbg=$(find "$WORK/store-gzip" -name '*.cpb' -printf '%s\n' | head -1)
  zp=$(stat -c %s "$WORK/zpipe.db.zst.age")
  gp=$(stat -c %s "$WORK/gpipe.db.gz.age")
  ob=$(find "$WORK/store-old" -name '*.cpb' -printf '%s\n' 2>/dev/null | head -1)
  python3 - "$WORK/times" "$size" "$db" "$cpb" "$cpbg" "$zp" "$gp" "$WORK/server" "$(getconf CLK_TCK)" "${ob:-0}" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
server = [l.split() for l in open(sys.argv[8]) if l.strip()]
ob = int(sys.argv[10])
etcd_cpu = lambda n: statistics.median(int(r[1]) / float(sys.argv[9]) for r in server if r[0] == n)
med = lambda n: statistics.median(float(r[1]) for r in rows if r[0] == n)
rss = lambda n: max(int(r[2]) for r in rows if r[0] == n) / 1024
size, db, cpb, cpbg, zp, gp = sys.argv[2], *map(int, sys.argv[3:8])
mib = lambda b: b / 2**20
print("\nseeded for %s MiB: database %.0f MiB" % (size, mib(db)))
print("%-34s %8s %9s %8s %11s %9s" % ("", "seconds", "peak RSS", "etcd CPU", "bundle", "of db"))
for name, label, b in [("floor", "etcdctl snapshot save", None), ("zstd_pipe", "... ; zstd -T0 -3 | age", zp),
                       ("gzip_pipe", "... ; gzip | age", gp), ("cpbackup", "cpbackup backup (zstd)", cpb),
                       ("cpb_gzip", "cpbackup backup --compression gzip", cpbg)]:
    size_s = ("%8.1f MiB %8.1f%%" % (mib(b), 100 * b / db)) if b else ""
    print("%-34s %8.2f %5.0f MiB %6.2f s %s" % (label, med(name), rss(name), etcd_cpu(name), size_s))
c, f, z = med("cpbackup"), med("floor"), med("zstd_pipe")
vz, vg = med("verify_zstd"), med("verify_gzip")
print("cpbackup bundle / zstd pipe bundle:  %.2fx (goal <= 1.0)" % (cpb / zp))
print("cpbackup wall / etcdctl save:        %.2fx (goal <= 1.0)" % (c / f))
print("cpbackup wall / zstd pipe:           %.2fx (goal <= 0.7)" % (c / z))
print("etcd's CPU / wall during cpbackup: %.2f (1.0: etcd's one-core stream is the bound)" % (etcd_cpu("cpbackup") / c))
print("cpbackup peak RSS:                   %.0f MiB (goal <= 64)" % rss("cpbackup"))
print("verify: zstd %.2f s (%.0f MiB), gzip %.2f s (%.0f MiB): gzip/zstd %.2fx (goal >= 1.5)" % (
    vz, rss("verify_zstd"), vg, rss("verify_gzip"), vg / vz))
uz, ug = med("unpack_zstd"), med("unpack_gzip")
print("restore's unpack step: zstd %.2f s (%.0f MiB), gzip %.2f s (%.0f MiB): gzip/zstd %.2fx (goal >= 1.5)" % (
    uz, rss("unpack_zstd"), ug, rss("unpack_gzip"), ug / uz))
rz, rg = med("restore_zstd"), med("restore_gzip")
print("  the whole process up to the first step: zstd %.2f s, gzip %.2f s: %.2fx" % (rz, rg, rg / rz))
print("gzip for comparison: bundle %.2fx the zstd pipe's, wall %.2fx etcdctl save" % (cpbg / zp, med("cpb_gzip") / f))
if any(r[0] == "verify_old" for r in rows):
    vo, uo = med("verify_old"), med("unpack_old")
    print("upgrading from --baseline-bin (its own gzip bundle, %.1f MiB): backup %.2f s; verify %.2f s -> %.2fx with zstd;"
          " unpack %.2f s -> %.2fx with zstd" % (mib(ob), med("old_backup"), vo, vo / vz, uo, uo / uz))
PY
done
