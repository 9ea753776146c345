#!/usr/bin/env bash
# Installs cpbackup on a control-plane host: the binary, a config (never overwritten), the
# systemd units, the state directory; then enables the backup timer (or the daemon).
# Idempotent: run it again after an upgrade. --uninstall removes the binary and the units and
# keeps the config, the state and every backup.
#
# Usage: scripts/install.sh [--binary FILE] [--config FILE] [--daemon] [--no-start] [--root DIR]
#        scripts/install.sh --uninstall [--root DIR]
#   --binary FILE  the cpbackup binary (default: target/release/cpbackup, else `cpbackup` on PATH)
#   --config FILE  config to install as /etc/cpbackup/config.toml if none is there yet
#                  (default: a commented example; edit it before the first backup)
#   --daemon       enable cpbackup.service (the long-running scheduler) instead of the timer
#   --no-start     install only; do not touch systemd
#   --root DIR     install under DIR instead of / (for images and tests; implies --no-start)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=/
BINARY=
CONFIG=
MODE=timer
START=1
UNINSTALL=0
usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case $1 in
    --binary) BINARY=$2; shift 2 ;;
    --config) CONFIG=$2; shift 2 ;;
    --daemon) MODE=daemon; shift ;;
    --no-start) START=0; shift ;;
    --root) ROOT=$2; START=0; shift 2 ;;
    --uninstall) UNINSTALL=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "install.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ "$ROOT" = / ] && [ "$(id -u)" != 0 ] && { echo "install.sh: run as root (or use --root DIR)" >&2; exit 2; }
R=${ROOT%/}
BIN_DST=$R/usr/local/bin/cpbackup
UNIT_DIR=$R/etc/systemd/system
UNITS=(cpbackup-backup.service cpbackup-backup.timer cpbackup.service)
say() { printf '%s\n' "$*"; }
systemd() { [ "$START" = 1 ] && command -v systemctl >/dev/null; }

if [ "$UNINSTALL" = 1 ]; then
  if systemd; then
    systemctl disable --now cpbackup-backup.timer cpbackup.service >/dev/null 2>&1 || true
  fi
  for u in "${UNITS[@]}"; do rm -f "$UNIT_DIR/$u"; done
  rm -f "$BIN_DST"
  systemd && systemctl daemon-reload || true
  say "removed $BIN_DST and the units; kept $R/etc/cpbackup, $R/var/lib/cpbackup (state and local backups)"
  exit 0
fi

if [ -z "$BINARY" ]; then
  if [ -x target/release/cpbackup ]; then BINARY=target/release/cpbackup
  elif command -v cpbackup >/dev/null; then BINARY=$(command -v cpbackup)
  else echo "install.sh: no binary: build it (cargo build --release) or pass --binary FILE" >&2; exit 2; fi
fi
"$BINARY" --version >/dev/null || { echo "install.sh: $BINARY does not run" >&2; exit 2; }

install -d -m 0755 "$R/usr/local/bin" "$UNIT_DIR"
if [ -f "$BIN_DST" ] && cmp -s "$BINARY" "$BIN_DST"; then
  say "unchanged: $BIN_DST ($("$BIN_DST" --version))"
else
  install -m 0755 "$BINARY" "$BIN_DST.new" && mv -f "$BIN_DST.new" "$BIN_DST"
  say "installed: $BIN_DST ($("$BIN_DST" --version))"
fi

install -d -m 0700 "$R/etc/cpbackup" "$R/var/lib/cpbackup"
if [ -f "$R/etc/cpbackup/config.toml" ]; then
  say "kept:      $R/etc/cpbackup/config.toml (never overwritten)"
else
  if [ -n "$CONFIG" ]; then
    install -m 0600 "$CONFIG" "$R/etc/cpbackup/config.toml"
  else
    (umask 077; cat >"$R/etc/cpbackup/config.toml" <<'TOML'
# cpbackup configuration: every key is in docs/configuration.md.
# Put the age recipients (public keys; make them with `cpbackup keygen` OFF this node) here:
recipients_file = "/etc/cpbackup/recipients.txt"

[[store]]
url = "/var/lib/cpbackup/backups"            # local spool
# [[store]]
# url = "s3://etcd-backups/CLUSTER"          # a bucket with Object Lock
# retain_days = 30

[retention]
keep_daily = 7

[schedule]                                   # for the daemon (cpbackup.service)
cron = "0 */6 * * *"
TOML
    )
  fi
  say "installed: $R/etc/cpbackup/config.toml (edit it: recipients and stores)"
fi
# A config cpbackup cannot read stops here (exit 2), with its message.
rc=0
"$BIN_DST" --config "$R/etc/cpbackup/config.toml" list --store "$R/var/lib/cpbackup" >/dev/null 2>"$R/var/lib/cpbackup/.install-check" || rc=$?
if [ "$rc" = 2 ]; then
  cat "$R/var/lib/cpbackup/.install-check" >&2
  rm -f "$R/var/lib/cpbackup/.install-check"
  echo "install.sh: fix $R/etc/cpbackup/config.toml, then run install.sh again" >&2
  exit 2
fi
rm -f "$R/var/lib/cpbackup/.install-check"

for u in "${UNITS[@]}"; do
  if [ -f "$UNIT_DIR/$u" ] && cmp -s "systemd/$u" "$UNIT_DIR/$u"; then
    say "unchanged: $UNIT_DIR/$u"
  else
    install -m 0644 "systemd/$u" "$UNIT_DIR/$u"
    say "installed: $UNIT_DIR/$u"
  fi
done

if systemd; then
  systemctl daemon-reload
  if [ "$MODE" = daemon ]; then
    systemctl disable --now cpbackup-backup.timer >/dev/null 2>&1 || true
    systemctl enable --now cpbackup.service
    say "enabled cpbackup.service; metrics: curl -s localhost:9790/metrics"
  else
    systemctl disable --now cpbackup.service >/dev/null 2>&1 || true
    systemctl enable --now cpbackup-backup.timer
    say "enabled cpbackup-backup.timer; next run: systemctl list-timers cpbackup-backup.timer"
  fi
else
  say "systemd not touched; enable with: systemctl daemon-reload && systemctl enable --now cpbackup-backup.timer"
fi
