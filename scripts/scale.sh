#!/usr/bin/env bash
# make scale: one embedded backup of a large deployment (default 10,000
# dynamic DOs and 200,000 objects) by a freshly built edgevault against the
# emulator, storage through R2 direct (the emulator's S3 view), measured by
# internal/benchtools/scalerun. Writes bench/scale.md (see docs/SCALE.md).
# It takes 10-20 minutes on 2 cores.
#
# Waits for a quiet machine like make bench (SCALE_MAX_LOAD, default 1.5,
# polled every minute for up to SCALE_LOAD_WAIT seconds, default 600).
# Environment: SCALE_OUT (default bench/scale.md), SCALE_ARGS (extra
# scalerun flags, e.g. "-dos 1000 -objects 20000"), KEEP_WORK=1, GO.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
OUT=${SCALE_OUT:-bench/scale.md}
MAX_LOAD=${SCALE_MAX_LOAD:-1.5}
LOAD_WAIT=${SCALE_LOAD_WAIT:-600}
export GOFLAGS="${GOFLAGS:-} -mod=readonly"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/edgevault-scale.XXXXXX")
child=""
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
trap_cleanup

echo "== building"
mkdir -p "$WORK/bin"
$GO build -o "$WORK/bin/edgevault" ./cmd/edgevault
$GO build -o "$WORK/bin/scalerun" ./internal/benchtools/scalerun
unset CLOUDFLARE_ACCOUNT_ID CLOUDFLARE_API_TOKEN EDGEBASE_URL EDGEBASE_SERVICE_KEY R2_ENDPOINT R2_ACCOUNT_ID R2_BUCKET R2_ACCESS_KEY_ID R2_SECRET_ACCESS_KEY

echo "== waiting for a quiet machine (1-minute load < $MAX_LOAD, up to ${LOAD_WAIT}s)"
waited=0
while :; do
	load=$(cut -d' ' -f1 /proc/loadavg)
	if awk -v l="$load" -v m="$MAX_LOAD" 'BEGIN { exit !(l < m) }'; then
		break
	fi
	if [ "$waited" -ge "$LOAD_WAIT" ]; then
		echo "load still $load after ${waited}s: measuring anyway (noted in the results)"
		break
	fi
	sleep 60
	waited=$((waited + 60))
done

keep=()
[ -n "${KEEP_WORK:-}" ] && keep=(-keep)
# shellcheck disable=SC2206
extra=(${SCALE_ARGS:-})
"$WORK/bin/scalerun" -edgevault "$WORK/bin/edgevault" -work "$WORK/run" -out "$OUT" \
	-command "make scale${SCALE_ARGS:+ SCALE_ARGS=\"$SCALE_ARGS\"}" "${keep[@]}" "${extra[@]}" &
child=$!
wait "$child"
child=""
echo "== wrote $OUT"
