#!/usr/bin/env bash
# Benchmark of listing at fleet scale (issue 21), in one run, as ratios: on a moto S3 server
# with Object Lock holding COUNT backups under one prefix (3 nodes of one cluster, hourly, a
# locked bundle and record each), against boto3's paginated ListObjectVersions of the same
# prefix (the least any tool can do):
#   cpbackup list (records and lock state)       goal <= 2x
#   cpbackup list --summary                      goal <= 1.2x
#   --latest selection (verify --ciphertext-only --latest; the planted bundles do not verify,
#   so this is the choice plus one small download)  goal <= 1.2x
#   cpbackup prune --dry-run --keep-last 24      goal <= 1.5x (reads lock state of what it would delete)
# list, --latest and prune are measured twice: with --no-cache (every record and lock asked of
# the store, as on a node's first run) and with the cache a previous run left (records by
# version, COMPLIANCE locks; the steady state of a daemon or of an operator's second command).
# Median of ROUNDS runs; peak RSS from GNU time.
# Usage: scripts/bench-list.sh [--counts "3000 30000"] [--rounds 3]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
cpb_bench_args 2,12 counts=COUNTS:"3000 30000" rounds=ROUNDS:3 -- "$@"
cpb_bench_setup bench-list
cpb_bench_moto
MOTO_PID=${PIDS[-1]}
# measure NAME CMD...: cpb_measure, plus the CPU time the S3 server spent on it
measure() { cpb_measure_server "$MOTO_PID" "$@"; }
export CPBACKUP_S3_ENDPOINT=$EP CPBACKUP_S3_PATH_STYLE=true CPBACKUP_CACHE_DIR=$WORK/cache
age-keygen -o "$WORK/key.txt" 2>/dev/null
export EP WORK BIN

for COUNT in $COUNTS; do
  cpb_log "planting $COUNT locked backups (bundle + record each) under s3://b$COUNT/fleet"
  python3 - "$EP" "$COUNT" <<'PY'
import boto3, datetime, json, sys
from concurrent.futures import ThreadPoolExecutor
ep, count = sys.argv[1], int(sys.argv[2])
s3 = boto3.client('s3', endpoint_url=ep)
bucket = 'b%d' % count
s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0, second=0, minute=0)
until = now + datetime.timedelta(days=2)
def put(i):
    node = 'm%d' % (i % 3)
    t = now - datetime.timedelta(hours=count // 3 - i // 3, minutes=i % 3)
    name = 'prod/%s/%s-rev%d.cpb' % (node, t.strftime('%Y%m%dT%H%M%SZ'), i + 1)
    body = b'x' * 512
    rec = dict(format_version=1, name=name, created=t.strftime('%Y-%m-%dT%H:%M:%SZ'), cluster='prod',
               node=node, etcd_revision=i + 1, etcd_version='3.5.1', etcd_member_id='1', etcd_cluster_id='2',
               snapshot_size=1, bundle_size=len(body), bundle_sha256='00', recipients=[], forced=False,
               tool_version='bench')
    for key, data in [('fleet/' + name, body), ('fleet/' + name + '.json', json.dumps(rec).encode())]:
        s3.put_object(Bucket=bucket, Key=key, Body=data, ObjectLockMode='COMPLIANCE', ObjectLockRetainUntilDate=until)
with ThreadPoolExecutor(16) as pool:
    list(pool.map(put, range(count)))
PY
  export BUCKET=b$COUNT
  : >"$WORK/times"
  : >"$WORK/server"
  # what a previous run leaves in the cache
  "$BIN" list --output json --store "s3://$BUCKET/fleet" >/dev/null
  "$BIN" prune --dry-run --keep-last 24 --output json --store "s3://$BUCKET/fleet" >/dev/null
  for _ in $(seq 1 "$ROUNDS"); do
    measure boto3 python3 -c "
import boto3, os
s3 = boto3.client('s3', endpoint_url=os.environ['EP'])
n = 0
for page in s3.get_paginator('list_object_versions').paginate(Bucket=os.environ['BUCKET'], Prefix='fleet/'):
    n += len(page.get('Versions', []))
print(n)"
    measure list "$BIN" list --no-cache --output json --store "s3://$BUCKET/fleet"
    measure list-cached "$BIN" list --output json --store "s3://$BUCKET/fleet"
    measure summary "$BIN" list --summary --store "s3://$BUCKET/fleet"
    measure fast "$BIN" list --fast --output json --store "s3://$BUCKET/fleet"
    measure latest bash -c '"$BIN" verify --no-cache --ciphertext-only --latest --store "s3://$BUCKET/fleet" >/dev/null 2>&1; true'
    measure latest-cached bash -c '"$BIN" verify --ciphertext-only --latest --store "s3://$BUCKET/fleet" >/dev/null 2>&1; true'
    measure prune "$BIN" prune --no-cache --dry-run --keep-last 24 --output json --store "s3://$BUCKET/fleet"
    measure prune-cached "$BIN" prune --dry-run --keep-last 24 --output json --store "s3://$BUCKET/fleet"
  done
  python3 - "$WORK/times" "$COUNT" "$WORK/server" "$(getconf CLK_TCK)" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
server = [l.split() for l in open(sys.argv[3]) if l.strip()]
tck = float(sys.argv[4])
med = lambda n: statistics.median(float(r[1]) for r in rows if r[0] == n)
cpu = lambda n: statistics.median(int(r[1]) / tck for r in server if r[0] == n)
rss = lambda n: max(int(r[2]) for r in rows if r[0] == n) / 1024
b = med("boto3")
print("\n%s backups (%d keys) on moto with Object Lock" % (sys.argv[2], 2 * int(sys.argv[2])))
print("%-50s %8s %7s %10s %11s" % ("", "seconds", "ratio", "peak RSS", "server CPU"))
for name, what, goal in [("boto3", "boto3 list_object_versions (baseline)", None),
                         ("list", "cpbackup list --output json (--no-cache)", 2.0),
                         ("list-cached", "cpbackup list --output json (cache)", 2.0),
                         ("summary", "cpbackup list --summary", 1.2),
                         ("fast", "cpbackup list --fast", None),
                         ("latest", "--latest selection, + one download (--no-cache)", 1.2),
                         ("latest-cached", "--latest selection, + one download (cache)", 1.2),
                         ("prune", "prune --dry-run --keep-last 24 (--no-cache)", 1.5),
                         ("prune-cached", "prune --dry-run --keep-last 24 (cache)", 1.5)]:
    m = med(name)
    print("%-50s %8.2f %6.2fx %7.0f MiB %9.2f s%s" % (what, m, m / b, rss(name), cpu(name),
          "" if goal is None else "  (goal <= %.1fx)" % goal))
PY
done
