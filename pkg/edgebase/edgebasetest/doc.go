// Package edgebasetest is an in-process EdgeBase server for tests and
// `make demo`: the admin backup API (/admin/api/backup/*) and a public REST
// subset answer with the status codes, messages and JSON bytes of a real
// EdgeBase 0.2.8 dev server (the "peer"), including its quirks that clients
// must work around (needsCreate for instance DOs, list-dos hex mode dropping
// cold DOs, restore-data "no such table" on a never-used target, octet-stream
// content types in storage listings). Data lives in real SQLite files laid
// out like Miniflare's state, with the DO hex ids workerd would assign, so
// state-dir discovery code runs unchanged against both. Seeding helpers,
// fault injection, a request log and an HTTP fingerprint for comparing any
// two EdgeBase servers complete it. Options.Profile switches to the
// behaviour of 0.4.x-0.5.x servers (Profile05: internal upload-grant keys,
// normalised and masked content types, a redacted config snapshot), as the
// protocol document's Appendix B describes it. DIFFERENCES.md lists where
// the peer differs from the protocol document and what Profile05 changes.
package edgebasetest
