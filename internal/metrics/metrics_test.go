package metrics

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

var fixed = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func TestEmitDocument(t *testing.T) {
	var buf bytes.Buffer
	e := New(&buf, "", func() time.Time { return fixed })
	err := e.Emit(Doc{
		Dimensions: []Dimension{{"Function", "worker"}},
		Metrics:    []Metric{CountOf(UnitsDone, 3), BytesOf(Bytes, 1024), Since(Duration, fixed.Add(-1500*time.Millisecond), fixed)},
		Properties: map[string]any{"requestId": "r-1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatalf("not one JSON object: %v\n%s", err, buf.String())
	}
	if !strings.HasSuffix(buf.String(), "}\n") || strings.Count(buf.String(), "\n") != 1 {
		t.Fatalf("want one line, got %q", buf.String())
	}
	want := map[string]any{
		"Function": "worker", "UnitsDone": 3.0, "Bytes": 1024.0, "Duration": 1500.0, "requestId": "r-1", "level": "INFO",
		"_aws": map[string]any{
			"Timestamp": float64(fixed.UnixMilli()),
			"CloudWatchMetrics": []any{map[string]any{
				"Namespace":  "EdgeVault",
				"Dimensions": []any{[]any{"Function"}, []any{}},
				"Metrics": []any{
					map[string]any{"Name": "UnitsDone", "Unit": "Count"},
					map[string]any{"Name": "Bytes", "Unit": "Bytes"},
					map[string]any{"Name": "Duration", "Unit": "Milliseconds"},
				},
			}},
		},
	}
	if a, b := mustJSON(t, got), mustJSON(t, want); a != b {
		t.Fatalf("document\n got %s\nwant %s", a, b)
	}
}

func TestEmitWithoutDimensionsAndRepeatedValues(t *testing.T) {
	var buf bytes.Buffer
	e := New(&buf, "Custom", func() time.Time { return fixed })
	if err := e.Emit(Doc{Metrics: []Metric{CountOf(JobsFailed, 1), CountOf(JobsFailed, 2)}, Level: "ERROR"}); err != nil {
		t.Fatal(err)
	}
	var got struct {
		AWS struct {
			CloudWatchMetrics []struct {
				Namespace  string
				Dimensions [][]string
				Metrics    []struct{ Name string }
			}
		} `json:"_aws"`
		JobsFailed []float64
		Level      string `json:"level"`
	}
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	d := got.AWS.CloudWatchMetrics[0]
	if d.Namespace != "Custom" || len(d.Dimensions) != 1 || len(d.Dimensions[0]) != 0 || len(d.Metrics) != 1 {
		t.Fatalf("directive %+v", d)
	}
	if len(got.JobsFailed) != 2 || got.Level != "ERROR" {
		t.Fatalf("values %v level %q", got.JobsFailed, got.Level)
	}
}

func TestEmitRejectsInvalid(t *testing.T) {
	e := New(&bytes.Buffer{}, "", nil)
	for name, d := range map[string]Doc{
		"no metrics":         {},
		"empty dimension":    {Dimensions: []Dimension{{"Function", ""}}, Metrics: []Metric{CountOf("x", 1)}},
		"duplicate dim":      {Dimensions: []Dimension{{"A", "1"}, {"A", "2"}}, Metrics: []Metric{CountOf("x", 1)}},
		"metric named a dim": {Dimensions: []Dimension{{"A", "1"}}, Metrics: []Metric{CountOf("A", 1)}},
	} {
		if err := e.Emit(d); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", name, err)
		}
	}
}

func TestEmitConcurrentLinesStayWhole(t *testing.T) {
	var buf bytes.Buffer
	e := New(&buf, "", nil)
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			_ = e.Emit(Doc{Metrics: []Metric{CountOf(UnitsDone, int64(i))}})
		})
	}
	wg.Wait()
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 50 {
		t.Fatalf("%d lines", len(lines))
	}
	for _, l := range lines {
		if !json.Valid([]byte(l)) {
			t.Fatalf("interleaved line %q", l)
		}
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
