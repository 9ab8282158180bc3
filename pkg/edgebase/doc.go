// Package edgebase is a client for EdgeBase's admin backup API
// (/admin/api/backup/*) and the few public REST reads a restore needs. It
// sends the service-key header, bounds the wait for response headers and
// for stalled bodies, retries idempotent calls on 429, 5xx and transport
// errors with capped, jittered backoff (honouring Retry-After), and
// streams large bodies (DO dumps, storage objects, the storage listing)
// both ways. Errors are typed: branch with errors.Is on ErrUnauthorized,
// ErrForbidden, ErrScope, ErrNotFound, ErrNeedsCreate, ... or read
// *APIError for the server's own message. It works with EdgeBase 0.2.8 and
// 0.4.x-0.5.x alike by reading what each reply shows, never a version:
// masked storage types (ObjectInfo.Masked), internal storage keys
// (IsInternalKey), redacted config snapshots (Config.Redacted and the
// Unknown flags). The service key is sent to the configured origin only:
// a redirect elsewhere fails with ErrRedirect.
package edgebase
