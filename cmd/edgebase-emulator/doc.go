// Command edgebase-emulator serves the EdgeBase emulator of
// pkg/edgebasetest on a loopback address for `make demo` and manual tests:
// flags choose the listen address, root service key, config profile, state
// directory and seed profile (none, demo, bench); once ready it prints one
// line EDGEBASE_URL=http://127.0.0.1:PORT (optionally also to --ready-file)
// and serves until SIGINT or SIGTERM.
package main
