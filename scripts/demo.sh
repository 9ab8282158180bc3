#!/usr/bin/env bash
# make demo: a real backup + verify + restore round trip on this machine.
#
# Two local EdgeBase emulators (127.0.0.1 only, no network): a source seeded
# with sample data (several DB blocks incl. isolated instance DOs, users,
# 240 R2 objects with unicode and odd keys) and an empty target. edgevault
# backs the source up with storage, verifies the archive, restores it into
# the target, and the two data fingerprints (every user, table row, object
# byte and content type) are compared.
#
# DEMO_PROFILE selects the EdgeBase version the emulators behave like:
# 0.2.8 (default, the version checked against the real peer) or 0.5
# (0.4.x-0.5.x: upload-grant markers hidden, non-passive content types
# served masked and stored normalised, a redacted config snapshot). On 0.5
# the source also holds upload-grant markers, the backup reports the masked
# types, and the fingerprints compare the types as the server serves them
# (normalised). `make demo-05` runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-build/bin}
EV="$BIN/edgevault"
EMU="$BIN/edgebase-emulator"
PROFILE=${DEMO_PROFILE:-0.2.8}
case "$PROFILE" in
  0.2.8 | 0.5) ;;
  *) echo "DEMO_PROFILE must be 0.2.8 or 0.5, not $PROFILE" >&2; exit 2 ;;
esac
WORK=$(mktemp -d "${TMPDIR:-/tmp}/edgevault-demo.XXXXXX")
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

start_emulator() { # name key [seed [extra flags...]]: starts in this shell, so cleanup can stop it by PID
  local name=$1 key=$2 seed=${3:-none}
  shift 3 || shift $#
  "$EMU" --edgebase "$PROFILE" --key "$key" --seed "$seed" --state "$WORK/$name-state" --ready-file "$WORK/$name.url" "$@" >/dev/null 2>"$WORK/$name.log" &
  PIDS+=($!)
}

emulator_url() { # name
  for _ in $(seq 1 100); do [ -s "$WORK/$1.url" ] && break; sleep 0.1; done
  [ -s "$WORK/$1.url" ] || { echo "emulator $1 did not start:"; cat "$WORK/$1.log"; exit 1; }
  sed 's/^EDGEBASE_URL=//' "$WORK/$1.url"
}

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

if [ "$PROFILE" = 0.5 ]; then
  start_emulator source demo-source-key demo --upload-grants 3
else
  start_emulator source demo-source-key demo
fi
start_emulator target demo-target-key
SRC=$(emulator_url source)
DST=$(emulator_url target)
echo "EdgeBase $PROFILE emulators"
echo "source $SRC ($(tr '\n' ' ' <"$WORK/source.log"))"
echo "target $DST (empty)"

step "edgevault backup create --include-storage"
"$EV" backup create --url "$SRC" --service-key demo-source-key --include-storage \
  --state-dir "$WORK/source-state" --output "$WORK/backups"
ARCHIVE=$(ls "$WORK"/backups/edgebase-backup-*.tar.gz)

step "edgevault backup verify"
"$EV" backup verify "$ARCHIVE"

step "edgevault backup restore --yes (into the empty target)"
"$EV" backup restore --from "$ARCHIVE" --url "$DST" --service-key demo-target-key --yes \
  --state-dir "$WORK/target-state"

step "fingerprints: source vs restored target"
"$EMU" fingerprint --url "$SRC" --key demo-source-key --state-dir "$WORK/source-state" > "$WORK/source.fp"
"$EMU" fingerprint --url "$DST" --key demo-target-key --state-dir "$WORK/target-state" > "$WORK/target.fp"
if diff -u "$WORK/source.fp" "$WORK/target.fp"; then
  types="content types"
  [ "$PROFILE" = 0.5 ] && types="content types as served, i.e. normalised; masked ones as application/octet-stream"
  echo "identical: $(grep -c '^users' "$WORK/source.fp") user set, $(grep -c '^table' "$WORK/source.fp") tables, $(grep -c '^object' "$WORK/source.fp") objects (bytes and $types)"
  echo "demo OK (EdgeBase $PROFILE)"
else
  echo "demo FAILED: the restored target differs from the source" >&2
  exit 1
fi
