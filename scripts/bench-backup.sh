#!/usr/bin/env bash
# Benchmark of `cpbackup backup` against what an operator scripts today, in one run, as ratios.
#
#   floor:    etcdctl snapshot save                      (just reading etcd's stream to disk)
#   baseline: etcdctl snapshot save; gzip -c | age -r    (the shell-script way; default gzip -6)
#   cpbackup: cpbackup backup --static-pods none         (stream → tar → gzip → age → store)
#
# etcd 3.5 is seeded with Kubernetes-like objects to each size in SIZES_MIB (default 256 and
# 1024 MiB of data), and at each size every contender runs ROUNDS times, interleaved; the median
# wall time and the peak RSS (GNU time) are reported. Goals (issue 2): cpbackup ≤ 0.7× baseline,
# ≤ 1.3× floor, peak RSS ≤ 64 MiB at every size.
#
# Usage: scripts/bench-backup.sh [--sizes "256 1024"] [--rounds 3] [--level N]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
LEVEL=""
cpb_bench_args 2,14 "sizes=SIZES_MIB:256 1024" rounds=ROUNDS:3 level=LEVEL -- "$@"
cpb_bench_setup bench
ETCD=$CPBACKUP_TEST_ETCD35_DIR

PORT=$(cpb_free_port)
EP=http://127.0.0.1:$PORT
PIDS+=("$(cpb_start_etcd "$ETCD" "$WORK/etcd" "$PORT" "$WORK/etcd.log")")
"$BIN" keygen --out "$WORK/key" >"$WORK/recipient" 2>/dev/null
R=$(cat "$WORK/recipient")
export ETCDCTL_API=3



baseline() {
  "$ETCD/etcdctl" --endpoints "$EP" snapshot save "$WORK/base.db" >/dev/null
  gzip -c "$WORK/base.db" | age -r "$R" >"$WORK/base.db.gz.age"
}
export -f baseline
export ETCD EP WORK R

printf '\n%-6s %-9s %9s %9s %9s %12s %12s %10s %10s\n' "data" "db" "floor s" "base s" "cpb s" "cpb/base" "cpb/floor" "RSS MiB" "bundle"
keys=0
for size in $SIZES_MIB; do
  target=$((size * 1024 * 1024 / 4096))
  cpb_log "seeding etcd to ~${size} MiB of objects ($target keys)"
  cpb_seed_etcd "$ETCD" "$EP" "$target" 0 json "$keys"
  keys=$target
  : >"$WORK/times"
  for round in $(seq 1 "$ROUNDS"); do
    rm -rf "$WORK/store" "$WORK/floor.db" "$WORK/base.db" "$WORK/base.db.gz.age"
    cpb_measure floor "$ETCD/etcdctl" --endpoints "$EP" snapshot save "$WORK/floor.db"
    cpb_measure baseline bash -c baseline
    cpb_measure cpbackup "$BIN" -q backup --static-pods none --etcd-endpoint "$EP" --recipient "$R" \
      --store "$WORK/store" --state-dir "$WORK/state" ${LEVEL:+--compression-level "$LEVEL"}
    [ "$round" -lt "$ROUNDS" ] || "$BIN" -q verify --store "$WORK/store" --identity "$WORK/key" --latest >/dev/null
  done
  dbsize=$(stat -c %s "$WORK/floor.db")
  bundle=$(find "$WORK/store" -name '*.cpb' -printf '%s\n' | head -1)
  python3 - "$WORK/times" "$size" "$dbsize" "$bundle" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
med = lambda n: statistics.median(float(r[1]) for r in rows if r[0] == n)
rss = lambda n: max(int(r[2]) for r in rows if r[0] == n) / 1024
f, b, c = med("floor"), med("baseline"), med("cpbackup")
db, bundle = int(sys.argv[3]), int(sys.argv[4])
print("%-6s %-9s %9.2f %9.2f %9.2f %12.2f %12.2f %10.1f %9.1f%%" % (
    sys.argv[2] + "M", "%.0fMiB" % (db / 2**20), f, b, c, c / b, c / f, rss("cpbackup"), 100 * bundle / db))
PY
done
