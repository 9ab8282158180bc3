package pipeline

import (
	"context"
	"io"
)

type meterKey struct{}

// WithMeter returns a context whose task handlers report bytes moved to
// fn as they go (the CLI's progress display); fn must be safe for
// concurrent use.
func WithMeter(ctx context.Context, fn func(n int64)) context.Context {
	return context.WithValue(ctx, meterKey{}, fn)
}

// MeteredReader reports every byte read from r to the context's meter.
func MeteredReader(ctx context.Context, r io.Reader) io.Reader {
	fn, ok := ctx.Value(meterKey{}).(func(int64))
	if !ok || fn == nil {
		return r
	}
	return &meteredReader{r: r, fn: fn}
}

type meteredReader struct {
	r  io.Reader
	fn func(int64)
}

func (m *meteredReader) Read(p []byte) (int, error) {
	n, err := m.r.Read(p)
	if n > 0 {
		m.fn(int64(n))
	}
	return n, err
}
