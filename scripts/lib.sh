# Shared by scripts/conformance.sh and scripts/bench.sh (sourced, not run).
# The caller sets WORK (its work directory) and may set child (the PID of a
# background run) and PEER_DIR (the peer scripts, once known).

# work_cleanup is the EXIT trap: it stops the background run (which stops
# its own peers and emulators on SIGTERM), then, by the PIDs the peer
# scripts and the emulator recorded under WORK, anything a killed run left
# behind; it removes WORK unless KEEP_WORK is set and keeps the exit code.
work_cleanup() {
	local rc=$? f pid
	trap - EXIT INT TERM
	if [ -n "${child:-}" ] && kill -0 "$child" 2>/dev/null; then
		kill -TERM "$child" 2>/dev/null || true
		wait "$child" 2>/dev/null || true
	fi
	if [ -n "${PEER_DIR:-}" ]; then
		while IFS= read -r f; do
			echo "stopping leftover peer $(dirname "$f")"
			bash "$PEER_DIR/stop.sh" "$(dirname "$f")" || true
		done < <(find "$WORK" -name peer.pid 2>/dev/null)
	fi
	while IFS= read -r f; do
		pid=$(cat "$f")
		if kill -0 "$pid" 2>/dev/null; then
			echo "stopping leftover emulator $pid"
			kill -TERM "$pid" 2>/dev/null || true
		fi
	done < <(find "$WORK" -name emulator.pid 2>/dev/null)
	if [ -n "${KEEP_WORK:-}" ]; then
		echo "work directory kept: $WORK"
	else
		rm -rf "$WORK"
	fi
	exit "$rc"
}

# trap_cleanup installs work_cleanup; a signal exits with 128+signal.
trap_cleanup() {
	trap work_cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
}

# install_peer: PEER_DIR (absolute) is installed into EDGEBASE_PEER_APP
# (default $TMPDIR/edgevault-peer-app, reused across runs); sets and
# exports APP, EDGEBASE_PEER_DIR and EDGEBASE_PEER_APP.
install_peer() {
	APP=${EDGEBASE_PEER_APP:-${TMPDIR:-/tmp}/edgevault-peer-app}
	mkdir -p "$APP"
	APP=$(cd "$APP" && pwd)
	export EDGEBASE_PEER_DIR="$PEER_DIR" EDGEBASE_PEER_APP="$APP"
	if [ ! -f "$APP/node_modules/@edge-base/cli/dist/index.js" ] || [ ! -f "$APP/edgebase.static.config.ts" ]; then
		echo "== installing the EdgeBase peer into $APP"
		# Same lock as internal/peer.Install, so concurrent runs do not collide.
		flock "$APP/.install.lock" bash "$PEER_DIR/install.sh" "$APP"
	else
		echo "== reusing the EdgeBase peer installed in $APP"
	fi
}
