// Package miniflare reads Durable Object instance names from the state
// directory of a local EdgeBase dev server (wrangler/Miniflare), where
// every DO is one SQLite file <state>/v3/do/<worker>-<Class>/<hex-id>.sqlite.
// It is how edgevault finds dynamic DB instances (workspace:ws-1, ...)
// without Cloudflare credentials: EdgeBase's own list-dos only knows the
// config's block names. Files are opened read-only.
package miniflare
