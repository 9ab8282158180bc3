package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// The phases work end to end on a small archive.
func TestWriteAndVerify(t *testing.T) {
	work := t.TempDir()
	var out bytes.Buffer
	if err := runWrite(context.Background(), work, 4<<20, 3, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "objects=") {
		t.Fatalf("write output %q", out.String())
	}
	out.Reset()
	if err := runVerify(context.Background(), work, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "bytes=") {
		t.Fatalf("verify output %q", out.String())
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"1GiB": 1 << 30, "512MiB": 512 << 20, "1.5KiB": 1536, "100": 100, "7B": 7} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("%s: %d %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "x", "-1MiB", "1TB"} {
		if _, err := parseSize(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
