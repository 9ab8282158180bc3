package main

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/edgevault/edgevault/pkg/edgebase/edgebasetest"
)

var result = regexp.MustCompile(`^RESULT op=(\w+) wall_s=[0-9.]+ requests=(\d+) bytes=(\d+) retries=0\n$`)

// The floor must send requests the server accepts: a restore from one
// emulator into another leaves the target with the source's data.
func TestCreateAndRestoreAgainstTheEmulator(t *testing.T) {
	ctx := context.Background()
	cfg := edgebasetest.BenchConfig(3)
	src := edgebasetest.NewTest(t, edgebasetest.Options{ServiceKey: "src-key", Config: &cfg})
	if err := src.SeedBench(ctx, 3, 12); err != nil {
		t.Fatal(err)
	}
	dst := edgebasetest.NewTest(t, edgebasetest.Options{ServiceKey: "dst-key", Config: &cfg})

	var out bytes.Buffer
	if err := run(ctx, []string{"create", "-url", src.URL(), "-key", "src-key", "-storage", "-c", "4"}, &out); err != nil {
		t.Fatal(err)
	}
	m := result.FindStringSubmatch(out.String())
	// config, list-dos and the storage list; control, auth and 1 namespace;
	// 5 DOs (shared, ledger, do001..do003); 12 objects.
	if m == nil || m[1] != "create" || m[2] != "23" {
		t.Fatalf("create printed %q, want 23 requests", out.String())
	}

	out.Reset()
	if err := run(ctx, []string{"restore", "-url", dst.URL(), "-key", "dst-key", "-source", src.URL(), "-source-key", "src-key", "-storage"}, &out); err != nil {
		t.Fatal(err)
	}
	if m := result.FindStringSubmatch(out.String()); m == nil || m[1] != "restore" {
		t.Fatalf("restore printed %q", out.String())
	}
	want, err := edgebasetest.TakeFingerprint(ctx, src.URL(), edgebasetest.FingerprintOptions{ServiceKey: "src-key"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := edgebasetest.TakeFingerprint(ctx, dst.URL(), edgebasetest.FingerprintOptions{ServiceKey: "dst-key"})
	if err != nil {
		t.Fatal(err)
	}
	if d := edgebasetest.Diff(want, got); d != "" {
		t.Fatalf("target differs from the source after the floor's restore:\n%s", d)
	}
}

func TestFlags(t *testing.T) {
	for _, args := range [][]string{
		nil,
		{"backup"},
		{"create"},
		{"restore", "-url", "http://127.0.0.1:1", "-key", "k"},
		{"create", "-url", "http://127.0.0.1:1", "-key", "k", "-c", "0"},
	} {
		if err := run(context.Background(), args, &bytes.Buffer{}); err == nil {
			t.Errorf("%q: no error", strings.Join(args, " "))
		}
	}
}
