#!/usr/bin/env bash
# make bench: edgevault vs the official EdgeBase CLI vs a raw floor on the
# real EdgeBase server, edgevault on the emulator at two sizes, and the
# 1 GiB archive benchmark. Writes bench/results.md and bench/results.tsv
# (see bench/README.md).
#
# Installs the EdgeBase peer from EDGEBASE_PEER_DIR (default ../shared/peer,
# only read) into EDGEBASE_PEER_APP (default $TMPDIR/edgevault-peer-app,
# reused), builds every binary it runs into a work directory, waits for a
# quiet machine (1-minute load below BENCH_MAX_LOAD, default 1.5, polled
# every minute for up to BENCH_LOAD_WAIT seconds, default 1200), then runs
# internal/benchtools/peerbench. Every peer and emulator it starts is
# stopped by PID at the end, also on failure or interrupt.
#
# Environment: BENCH_OUT (default bench), BENCH_JOB_TASKS (tasks of the
# jobscale row, default 100000), BENCH_ARGS (extra peerbench flags,
# e.g. "-reps 1 -scenarios 50:200 -big-rows 0"), KEEP_WORK=1, GO.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
OUT=${BENCH_OUT:-bench}
MAX_LOAD=${BENCH_MAX_LOAD:-1.5}
LOAD_WAIT=${BENCH_LOAD_WAIT:-1200}
export GOFLAGS="${GOFLAGS:-} -mod=readonly"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/edgevault-bench.XXXXXX")
PEER_DIR=""
child=""

# shellcheck source=scripts/lib.sh
. scripts/lib.sh
trap_cleanup

echo "== building"
mkdir -p "$WORK/bin"
for cmd in cmd/edgevault cmd/edgebase-emulator internal/benchtools/rawfloor internal/benchtools/archivebench internal/benchtools/peerbench internal/benchtools/jobscale; do
	$GO build -o "$WORK/bin/$(basename "$cmd")" "./$cmd"
done
command -v /usr/bin/time >/dev/null || { echo "bench needs GNU time at /usr/bin/time (Debian package 'time')" >&2; exit 1; }

args=()
PEER_DIR=${EDGEBASE_PEER_DIR:-../shared/peer}
if [ -f "$PEER_DIR/start.sh" ] && command -v node >/dev/null; then
	PEER_DIR=$(cd "$PEER_DIR" && pwd)
	install_peer
else
	if [ "${CI:-}" = true ]; then
		echo "no EdgeBase peer at $PEER_DIR (or no node): CI needs it for make bench" >&2
		exit 1
	fi
	echo "no EdgeBase peer at $PEER_DIR (or no node): only the emulator and archive benchmarks run" >&2
	PEER_DIR=""
	args+=(-skip-peer)
fi
unset CLOUDFLARE_ACCOUNT_ID CLOUDFLARE_API_TOKEN EDGEBASE_URL EDGEBASE_SERVICE_KEY

echo "== waiting for a quiet machine (1-minute load < $MAX_LOAD, up to ${LOAD_WAIT}s)"
waited=0
while :; do
	load=$(cut -d' ' -f1 /proc/loadavg)
	echo "$(date -u +%H:%M:%S) $(uptime | sed 's/.*load average/load average/')"
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

mkdir -p "$OUT"
# shellcheck disable=SC2206
extra=(${BENCH_ARGS:-})
"$WORK/bin/peerbench" -work "$WORK/run" -out "$OUT" \
	-edgevault "$WORK/bin/edgevault" -emulator "$WORK/bin/edgebase-emulator" \
	-rawfloor "$WORK/bin/rawfloor" -archivebench "$WORK/bin/archivebench" \
	-load-before "$(cut -d' ' -f1-3 /proc/loadavg) after waiting ${waited}s" \
	"${args[@]}" "${extra[@]}" &
child=$!
rc=0
wait "$child" || rc=$?
child=""
if [ "$rc" -eq 0 ]; then
	# The engine's own cost per job, apart from EdgeBase: a check must stay
	# far below a Lambda's 15 minutes however many tasks a job has.
	echo "== engine bookkeeping (jobscale, ${BENCH_JOB_TASKS:-100000} tasks)"
	{
		printf '\n## Engine bookkeeping\n\n'
		printf 'internal/benchtools/jobscale: one job of no-op tasks on the directory store and the in-process queue, '
		printf 'so only the engine is measured (planning, queuing, recording outcomes, checks). A check counts a '
		printf "phase's outcomes by listing them; it never reads them one by one.\n\n"
		"$WORK/bin/jobscale" -tasks "${BENCH_JOB_TASKS:-100000}"
	} >>"$OUT/results.md" || rc=$?
fi
echo "== results: $OUT/results.md"
exit "$rc"
