// Command edgebase-emulator serves the EdgeBase emulator of
// pkg/edgebase/edgebasetest on a loopback address for `make demo` and
// manual tests: flags choose the listen address, root service key, config
// profile, state directory, seed profile (none, demo, bench), the EdgeBase
// version to behave like (--edgebase 0.2.8, the default and the one
// checked against a real server, or 0.5 for the 0.4.x-0.5.x changes) and
// upload-grant markers to store; once ready it prints one line
// EDGEBASE_URL=http://127.0.0.1:PORT (optionally also to --ready-file) and
// serves until SIGINT or SIGTERM.
package main
