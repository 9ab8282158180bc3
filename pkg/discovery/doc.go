// Package discovery finds the DB Durable Objects of an EdgeBase deployment:
// the server's own list-dos scan, Edge mode through the Cloudflare API, a
// local dev server's (or packaged app's) state directory, and explicit
// instance names. A backup plans one task per DO it finds; a restore lists
// the target's DOs to wipe the ones the archive lacks.
package discovery
