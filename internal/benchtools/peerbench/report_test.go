package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseClock(t *testing.T) {
	for in, want := range map[string]float64{"0:01.23": 1.23, "1:02.50": 62.5, "1:00:00": 3600} {
		if got := parseClock(in); got != want {
			t.Errorf("parseClock(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestParseScenarios(t *testing.T) {
	got, err := parseScenarios("50:200, 500:2000")
	if err != nil || len(got) != 2 || got[1] != (scenario{500, 2000}) || got[0].String() != "N=50 M=200" {
		t.Fatalf("parseScenarios = %v, %v", got, err)
	}
	for _, bad := range []string{"50", "x:1", "0:1", "1:-1"} {
		if _, err := parseScenarios(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestMedian(t *testing.T) {
	if m := median([]float64{3, 1, 2}); m != 2 {
		t.Errorf("median odd = %v", m)
	}
	if m := median([]float64{4, 1, 2, 3}); m != 2.5 {
		t.Errorf("median even = %v", m)
	}
	if m := median(nil); m != 0 {
		t.Errorf("median empty = %v", m)
	}
}

// Rows survive the TSV, and the report shows medians, ratios and failures.
func TestTSVAndMarkdown(t *testing.T) {
	path := filepath.Join(t.TempDir(), "results.tsv")
	w, err := openTSV(path)
	if err != nil {
		t.Fatal(err)
	}
	sc := "N=500 M=2000"
	for rep, walls := range [][3]float64{{10, 2, 1.8}, {12, 3, 1.9}, {11, 2.5, 2}} {
		for i, tool := range []string{"official", "edgevault", "floor"} {
			w.add(row{Suite: "peer", Scenario: sc, Op: "restore", Tool: tool, Rep: rep + 1, Wall: walls[i], RSSKiB: int64(20<<10) * int64(i+1), Verified: "yes", Note: "a\tb"})
		}
	}
	w.add(row{Suite: "peer", Scenario: sc, Op: "create-storage", Tool: "official", Rep: 1, RC: 1, Note: "boom"})
	w.add(row{Suite: "archive", Scenario: "1GiB", Op: "write", Tool: "edgevault", Rep: 1, Wall: 20, RSSKiB: 30 << 10})
	w.add(row{Suite: "archive", Scenario: "1GiB", Op: "verify", Tool: "edgevault", Rep: 1, Wall: 9, RSSKiB: 70 << 10})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	rows, err := readTSV(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 12 || rows[0] != w.rows[0] && rows[0].Note != "a b" {
		t.Fatalf("read %d rows, first %+v", len(rows), rows[0])
	}
	var md bytes.Buffer
	writeMarkdown(&md, rows, []string{"machine"}, "profile text")
	s := md.String()
	for _, want := range []string{
		"| N=500 M=2000 | restore | 11.00 s / 20 MiB | 2.50 s / 40 MiB | 1.90 s / 60 MiB | 0.23 | 1.32 | yes | official yes, edgevault yes, floor yes |",
		"| N=500 M=2000 | create-storage | failed (1/1) |",
		"| verify | 9.0 s | 70 MiB | **no** |",
		"profile text",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("report lacks %q:\n%s", want, s)
		}
	}
}

// A timed child's wall time, RSS and CPU come back from /usr/bin/time,
// and its CPU shows in treeCPU of this process while it runs.
func TestTimed(t *testing.T) {
	if _, err := os.Stat("/usr/bin/time"); err != nil {
		t.Skip("no /usr/bin/time")
	}
	m, err := timed(context.Background(), t.TempDir(), os.Environ(), "sh", "-c", "echo out; echo err >&2; i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; exit 3")
	if err != nil {
		t.Fatal(err)
	}
	if m.rc != 3 || m.out != "out\n" || !strings.Contains(m.errOut, "err") || m.wall <= 0 || m.rssKiB <= 0 || m.user+m.sys <= 0 {
		t.Fatalf("measure = %+v", m)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := timed(ctx, t.TempDir(), os.Environ(), "sleep", "30"); err == nil || time.Since(start) > 10*time.Second {
		t.Fatalf("cancelled run: err %v after %s", err, time.Since(start))
	}
}

func TestTreeCPU(t *testing.T) {
	before := treeCPU(os.Getpid())
	deadline := time.Now().Add(300 * time.Millisecond)
	x := 0
	for time.Now().Before(deadline) {
		x++
	}
	if after := treeCPU(os.Getpid()); after <= before || x == 0 {
		t.Fatalf("treeCPU %v -> %v", before, after)
	}
	if treeCPU(0) != 0 {
		t.Fatal("treeCPU(0) != 0")
	}
}
