#!/usr/bin/env bash
# Benchmark of the S3 upload path (issue 3), in one run, as a ratio: the same ≥ 1 GiB bundle
# uploaded to a moto S3 server with Object Lock by `cpbackup backup --upload-pending` (multipart,
# CRC32C per part, retention set and read back) and by `aws s3 cp` (PyPI awscli).
# Goal: ≤ 1.0× the AWS CLI's time, peak RSS ≤ 128 MiB. Median of ROUNDS.
# Usage: scripts/bench-s3.sh [--mib 1024] [--rounds 3]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
cpb_bench_args 2,6 mib=MIB:1024 rounds=ROUNDS:3 -- "$@"
cpb_bench_setup bench-s3
python3 -c 'import awscli' 2>/dev/null || python3 -m pip install -q awscli 2>&1 | grep -v 'Running pip as the' >&2 || true
cpb_bench_moto
python3 -c "import boto3;boto3.client('s3',endpoint_url='$EP').create_bucket(Bucket='bench',ObjectLockEnabledForBucket=True)"

cpb_log "making a ${MIB} MiB bundle (random bytes stand in for ciphertext)"
NAME=bench/node/20260101T000000Z-rev1.cpb
mkdir -p "$WORK/local/bench/node"
head -c $((MIB * 1024 * 1024)) /dev/urandom >"$WORK/local/$NAME"
SIZE=$(stat -c %s "$WORK/local/$NAME")
cat >"$WORK/local/$NAME.json" <<JSON
{"format_version":1,"name":"$NAME","created":"2026-01-01T00:00:00Z","cluster":"bench","node":"node",
 "etcd_revision":1,"etcd_version":"3.5.1","etcd_member_id":"1","etcd_cluster_id":"1","snapshot_size":$SIZE,
 "bundle_size":$SIZE,"bundle_sha256":"-","recipients":[],"forced":false,"tool_version":"bench"}
JSON

: >"$WORK/times"
for round in $(seq 1 "$ROUNDS"); do
  echo "{\"stores\":[\"s3://bench/cpb$round\"]}" >"$WORK/local/$NAME.pending"
  cpb_measure cpbackup "$BIN" -q backup --upload-pending \
    --store "$WORK/local" --store "s3://bench/cpb$round" --s3-endpoint "$EP" --s3-path-style \
    --state-dir "$WORK/state" >/dev/null
  cpb_measure awscli python3 -m awscli s3 cp --quiet --endpoint-url "$EP" \
    "$WORK/local/$NAME" "s3://bench/aws$round/$NAME"
  python3 -c "import boto3;c=boto3.client('s3',endpoint_url='$EP');[c.delete_object(Bucket='bench',Key=o['Key']) for o in c.list_objects_v2(Bucket='bench',Prefix='aws$round/').get('Contents',[])]"
done
python3 - "$WORK/times" "$SIZE" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
med = lambda n: statistics.median(float(r[1]) for r in rows if r[0] == n)
rss = lambda n: max(int(r[2]) for r in rows if r[0] == n) / 1024
c, a = med("cpbackup"), med("awscli")
mib = int(sys.argv[2]) / 2**20
print("\nbundle %.0f MiB to moto S3 with Object Lock" % mib)
print("%-28s %8s %9s %10s" % ("", "seconds", "MiB/s", "peak RSS"))
print("%-28s %8.2f %9.0f %7.0f MiB" % ("cpbackup --upload-pending", c, mib / c, rss("cpbackup")))
print("%-28s %8.2f %9.0f %7.0f MiB" % ("aws s3 cp", a, mib / a, rss("awscli")))
print("cpbackup / aws s3 cp: %.2fx (goal <= 1.0)" % (c / a))
PY
