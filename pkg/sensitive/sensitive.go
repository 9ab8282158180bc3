package sensitive

import "log/slog"

// String is a credential. Use Reveal() at the single place the value is sent.
type String string

const redacted = "[REDACTED]"

// Reveal returns the value.
func (s String) Reveal() string { return string(s) }

// IsZero reports whether no value is set.
func (s String) IsZero() bool { return s == "" }

// String implements fmt.Stringer.
func (s String) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// GoString implements fmt.GoStringer (for %#v).
func (s String) GoString() string { return s.String() }

// LogValue implements slog.LogValuer.
func (s String) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalText implements encoding.TextMarshaler so JSON and YAML never carry it.
func (s String) MarshalText() ([]byte, error) { return []byte(s.String()), nil }
