package iox

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestContextReaderStopsWhenDone(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	r := ContextReader(ctx, strings.NewReader("abcdef"))
	buf := make([]byte, 3)
	if n, err := r.Read(buf); n != 3 || err != nil {
		t.Fatalf("read %d %v", n, err)
	}
	cancel()
	if n, err := r.Read(buf); n != 0 || !errors.Is(err, context.Canceled) {
		t.Fatalf("after cancel: read %d %v", n, err)
	}
}

func TestCounting(t *testing.T) {
	var out bytes.Buffer
	w := &CountingWriter{W: &out}
	r := &CountingReader{R: strings.NewReader("hello, world")}
	if _, err := io.Copy(w, r); err != nil {
		t.Fatal(err)
	}
	if w.N != 12 || r.N != 12 || out.String() != "hello, world" {
		t.Fatalf("wrote %d, read %d, got %q", w.N, r.N, out.String())
	}
}
