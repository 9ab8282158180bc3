package main

import (
	"math"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestParseStatus(t *testing.T) {
	kib, hwm, err := parseStatus(strings.NewReader("Name:\tedgevault\nVmHWM:\t  30000 kB\nVmRSS:\t   12345 kB\n"))
	if err != nil || kib != 12345 || hwm != 30000 {
		t.Fatalf("got %d, %d, %v", kib, hwm, err)
	}
	if _, _, err := parseStatus(strings.NewReader("Name: x\n")); err == nil {
		t.Error("no VmRSS line accepted")
	}
}

func TestSlopeAndSummary(t *testing.T) {
	x := []float64{0, 1, 2, 3}
	if s := slope(x, []float64{1, 3, 5, 7}); math.Abs(s-2) > 1e-9 {
		t.Errorf("slope %v, want 2", s)
	}
	if s := slope(x, []float64{4, 4, 4, 4}); s != 0 {
		t.Errorf("flat slope %v", s)
	}
	if s := slope([]float64{1}, []float64{1}); s != 0 {
		t.Errorf("one point: %v", s)
	}
	st := summarise([]float64{5, 1, 3, 2})
	if st.Min != 1 || st.Max != 5 || st.Median != 2.5 {
		t.Errorf("%+v", st)
	}
	r := summariseRSS([]rssSample{{At: 0, KiB: 1024}, {At: 60, KiB: 2048}, {At: 120, KiB: 3072}})
	if r.Median != 2 || math.Abs(r.SlopeAll-1) > 1e-9 {
		t.Errorf("%+v", r)
	}
}

func TestOperations(t *testing.T) {
	for target, want := range map[string]string{
		"/bucket?list-type=2&max-keys=1000": "ListObjectsV2",
		"/bucket/uploads/a%20b.bin":         "GetObject",
		"/bucket/":                          "ListObjects",
	} {
		if got := s3Op(httptest.NewRequest("GET", target, nil)); got != want {
			t.Errorf("%s: %s, want %s", target, got, want)
		}
	}
	if got := s3Op(httptest.NewRequest("POST", "/bucket?delete", nil)); got != "DeleteObjects" {
		t.Errorf("delete: %s", got)
	}
	if got := adminOp(httptest.NewRequest("POST", "/admin/api/backup/dump-storage?action=get", nil)); got != "dump-storage:get" {
		t.Errorf("admin: %s", got)
	}
	if got := adminOp(httptest.NewRequest("POST", "/admin/api/backup/dump-do", nil)); got != "dump-do" {
		t.Errorf("admin: %s", got)
	}
}

func TestPhases(t *testing.T) {
	evs := []progressEvent{{At: 2, Total: 10}, {At: 3, Done: 5, Total: 10}, {At: 7, Done: 10, Total: 10}, {At: 8, Event: "end", Done: 10, Total: 10}}
	plan, tasks, finish := phases(evs, 9*time.Second)
	if plan != 2 || tasks != 5 || finish != 2 {
		t.Errorf("plan %v tasks %v finish %v", plan, tasks, finish)
	}
	if d := doneAt(evs, 5); d != 5 {
		t.Errorf("done at 5 s: %d", d)
	}
}

func TestSpreadAndRedact(t *testing.T) {
	if got := spread(100, 3); got[0] != 0 || got[1] != 49 || got[2] != 99 {
		t.Errorf("spread %v", got)
	}
	if got := spread(2, 5); len(got) != 2 {
		t.Errorf("spread %v", got)
	}
	args := redactArgs([]string{"--service-key", "secret", "--output", "/tmp/w/out", "--url", "http://127.0.0.1:4321"})
	if strings.Contains(strings.Join(args, " "), "secret") || args[3] != "$WORK/out" || args[5] != "http://127.0.0.1:PORT" {
		t.Errorf("%v", args)
	}
}

func TestShape(t *testing.T) {
	s := shape{Objects: 4, MinSize: 10, Spread: 3}
	if b := s.bytes(); b != 10+11+12+10 {
		t.Errorf("bytes %d", b)
	}
	if o := s.object(3); !strings.HasPrefix(o.Key, "avatars/") || o.Size != 10 {
		t.Errorf("%+v", o)
	}
}

func TestHWMAt(t *testing.T) {
	s := []rssSample{{At: 0, HWM: 10}, {At: 1, HWM: 50}, {At: 2, HWM: 70}, {At: 3, HWM: 70}}
	at, ok := hwmAt(s)
	if !ok || at != [2]float64{1, 2} {
		t.Errorf("%v %v", at, ok)
	}
	if _, ok := hwmAt(nil); ok {
		t.Error("no samples")
	}
}
