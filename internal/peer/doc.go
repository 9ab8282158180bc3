// Package peer runs a real EdgeBase 0.2.8 dev server (the "peer") for
// conformance tests and benchmarks: it installs it once into a work
// directory from the peer scripts ($EDGEBASE_PEER_DIR), starts instances on
// free loopback ports with a config profile, seeds them through the peer's
// own scripts, stops them by the PIDs the scripts recorded, and reads
// Durable Object names from a Miniflare state directory (a Go port of
// list-do-names.sh). Available tells whether the peer can run here.
package peer
