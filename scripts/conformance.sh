#!/usr/bin/env bash
# make conformance: edgevault against a real EdgeBase server.
#
# Default: installs the EdgeBase peer from EDGEBASE_PEER_DIR (default
# ../shared/peer, only read) into EDGEBASE_PEER_APP (default
# $TMPDIR/edgevault-peer-app, reused across runs), then runs
#   * the contract suite (test/contract: emulator vs the real server), and
#   * the conformance suite (test/conformance: interop matrix with the
#     official CLI, instance DOs, edge cases, dirty/never-used/cold targets),
# with EDGEVAULT_PEER=1. The Go tests start their own peers on free
# loopback ports and stop them by PID; this script also stops, by the PIDs
# the peer scripts recorded, any peer a killed run left behind.
#
# With EDGEBASE_URL and EDGEBASE_SERVICE_KEY set it runs only the read-only
# part against that deployment: the backup API's read endpoints and
# auth errors, then edgevault backup create + verify (see
# test/conformance/readonly_test.go for EDGEVAULT_READONLY_STORAGE and how
# dynamic instances are found).
#
# Environment: CONFORMANCE_TIMEOUT (default 20m per suite), KEEP_WORK=1 keeps
# the work directory (peer states, archives, logs), GO (default go).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
GO=${GO:-go}
TIMEOUT=${CONFORMANCE_TIMEOUT:-20m}
export GOFLAGS="${GOFLAGS:-} -mod=readonly"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/edgevault-conformance.XXXXXX")
LOG="$WORK/conformance.log"
PEER_DIR=""
child=""

# shellcheck source=scripts/lib.sh
. scripts/lib.sh
trap_cleanup

# run DIR BINARY ARGS...: run a compiled test binary in DIR in the
# background (so a signal to this script reaches the trap at once), teeing
# its output into the log.
run() {
	local dir=$1
	shift
	(cd "$dir" && exec "$@") > >(tee -a "$LOG") 2>&1 &
	child=$!
	local rc=0
	wait "$child" || rc=$?
	child=""
	return "$rc"
}

summary() {
	echo
	echo "==== conformance summary"
	grep -E '^\s*--- (PASS|FAIL|SKIP)' "$LOG" | sed -E 's/ \([0-9.]+s\)$//' || true
}

mkdir -p "$WORK/bin" "$WORK/tmp"
echo "== building test binaries"
$GO test -c -o "$WORK/bin/conformance.test" ./test/conformance/

if [ -n "${EDGEBASE_URL:-}" ] || [ -n "${EDGEBASE_SERVICE_KEY:-}" ]; then
	if [ -z "${EDGEBASE_URL:-}" ] || [ -z "${EDGEBASE_SERVICE_KEY:-}" ]; then
		echo "read-only mode needs both EDGEBASE_URL and EDGEBASE_SERVICE_KEY" >&2
		exit 2
	fi
	echo "== read-only conformance against $EDGEBASE_URL"
	rc=0
	TMPDIR="$WORK/tmp" EDGEVAULT_READONLY=1 run "$ROOT/test/conformance" "$WORK/bin/conformance.test" \
		-test.v -test.count=1 -test.timeout "$TIMEOUT" -test.run '^TestReadOnly$' || rc=$?
	summary
	exit "$rc"
fi

PEER_DIR=${EDGEBASE_PEER_DIR:-../shared/peer}
if [ ! -f "$PEER_DIR/start.sh" ]; then
	echo "no EdgeBase peer scripts at $PEER_DIR: set EDGEBASE_PEER_DIR (or EDGEBASE_URL + EDGEBASE_SERVICE_KEY for the read-only checks)" >&2
	exit 1
fi
PEER_DIR=$(cd "$PEER_DIR" && pwd)
export EDGEVAULT_PEER=1
unset CLOUDFLARE_ACCOUNT_ID CLOUDFLARE_API_TOKEN EDGEBASE_URL EDGEBASE_SERVICE_KEY

for tool in node curl /usr/bin/time; do
	command -v "$tool" >/dev/null || { echo "conformance needs $tool (see $PEER_DIR/README.md)" >&2; exit 1; }
done
install_peer

$GO test -c -o "$WORK/bin/contract.test" ./test/contract/
start=$(date +%s)
rc=0
echo "== contract suite (emulator and real server)"
TMPDIR="$WORK/tmp" run "$ROOT/test/contract" "$WORK/bin/contract.test" \
	-test.v -test.count=1 -test.timeout "$TIMEOUT" || rc=$?
echo "== conformance suite (interop, instances, edge cases)"
TMPDIR="$WORK/tmp" run "$ROOT/test/conformance" "$WORK/bin/conformance.test" \
	-test.v -test.count=1 -test.timeout "$TIMEOUT" || rc=$?
summary
echo "total $(($(date +%s) - start)) s, exit $rc"
exit "$rc"
