// Package miniflare reads Durable Object instance names from the state
// directory of a local EdgeBase dev server (wrangler/Miniflare), where
// every DO is one SQLite file <state>/v3/do/<worker>-<Class>/<hex-id>.sqlite.
// It is how edgevault finds dynamic DB instances (workspace:ws-1, ...)
// without Cloudflare credentials: EdgeBase's own list-dos only knows the
// config's block names. The state may be a dev server's (--persist-to,
// .wrangler/state) or a packaged app's (`edgebase pack`, under the user's
// data directory; PackagedStateDirs knows where per OS). Files are opened
// read-only.
package miniflare
