// Package sensitive provides a string type for credentials (service keys,
// API tokens, secret values) that never prints its value: fmt, %v, slog
// and JSON encoding all show a redaction marker.
package sensitive
