package metrics

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sync"
	"time"
)

// DefaultNamespace is the CloudWatch namespace when none is configured.
const DefaultNamespace = "EdgeVault"

// Metric names shared by the functions and the alarms of the stack.
const (
	UnitsDone    = "UnitsDone"    // tasks recorded done
	UnitsFailed  = "UnitsFailed"  // tasks recorded failed for good
	UnitsRetried = "UnitsRetried" // task deliveries that failed and will be retried
	Bytes        = "Bytes"        // payload bytes moved by tasks
	TaskDuration = "TaskDuration" // one task delivery, end to end
	JobsStarted  = "JobsStarted"
	JobsDone     = "JobsDone"
	JobsFailed   = "JobsFailed"  // the stack's JobsFailed alarm watches its dimensionless total
	JobsStalled  = "JobsStalled" // jobs the watchdog revived or failed
	ArchiveBytes = "ArchiveBytes"
	Duration     = "Duration" // one handler invocation
	DRCopies     = "DRCopies"
	DRFailures   = "DRFailures"
	// DrillFailed is 1 for a drill that failed or could not run, 0 for one
	// that passed; LastProvenRestorableAge the seconds since the newest
	// archive whose drill passed was taken. The stack's drill alarms
	// watch their dimensionless values.
	DrillFailed             = "DrillFailed"
	LastProvenRestorableAge = "LastProvenRestorableAge"
)

// Unit is a CloudWatch metric unit.
type Unit string

// Units used here.
const (
	Count        Unit = "Count"
	UnitBytes    Unit = "Bytes"
	Milliseconds Unit = "Milliseconds"
	Seconds      Unit = "Seconds"
)

// Metric is one value.
type Metric struct {
	Name  string
	Unit  Unit
	Value float64
}

// CountOf is a Count metric.
func CountOf(name string, n int64) Metric { return Metric{Name: name, Unit: Count, Value: float64(n)} }

// BytesOf is a Bytes metric.
func BytesOf(name string, n int64) Metric {
	return Metric{Name: name, Unit: UnitBytes, Value: float64(n)}
}

// Since is a Milliseconds metric of the time elapsed from start to now.
func Since(name string, start, now time.Time) Metric {
	return Metric{Name: name, Unit: Milliseconds, Value: float64(now.Sub(start).Microseconds()) / 1000}
}

// Dimension is a name/value pair metrics are split by.
type Dimension struct{ Name, Value string }

// Doc is one EMF document.
type Doc struct {
	Dimensions []Dimension
	Metrics    []Metric
	// Properties are extra searchable fields (request id, job id); they do
	// not become metrics or dimensions.
	Properties map[string]any
	// Level is the Lambda log level of the line ("" = INFO). Lambda's JSON
	// log format drops lines below the function's application log level,
	// metrics included, so metrics an alarm depends on are sent as ERROR.
	Level string
}

// Emitter writes EMF documents; it is safe for concurrent use.
type Emitter struct {
	mu        sync.Mutex
	w         io.Writer
	namespace string
	now       func() time.Time
}

// New returns an Emitter writing to w under namespace ("" =
// DefaultNamespace). now stamps the documents (nil = time.Now).
func New(w io.Writer, namespace string, now func() time.Time) *Emitter {
	if namespace == "" {
		namespace = DefaultNamespace
	}
	if now == nil {
		now = time.Now
	}
	return &Emitter{w: w, namespace: namespace, now: now}
}

// Discard returns an Emitter that writes nothing.
func Discard() *Emitter { return New(io.Discard, "", nil) }

// Namespace is the CloudWatch namespace of the documents.
func (e *Emitter) Namespace() string { return e.namespace }

// EMF limits.
const (
	maxMetrics    = 100
	maxDimensions = 30
)

// ErrInvalid marks a document CloudWatch would reject.
var ErrInvalid = errors.New("metrics: invalid document")

// Emit writes d as one line.
func (e *Emitter) Emit(d Doc) error {
	b, err := e.encode(d)
	if err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, err := e.w.Write(b); err != nil {
		return fmt.Errorf("metrics: write: %w", err)
	}
	return nil
}

type metricDef struct {
	Name string `json:"Name"`
	Unit Unit   `json:"Unit,omitempty"`
}

type directive struct {
	Namespace  string      `json:"Namespace"`
	Dimensions [][]string  `json:"Dimensions"`
	Metrics    []metricDef `json:"Metrics"`
}

type envelope struct {
	Timestamp         int64       `json:"Timestamp"`
	CloudWatchMetrics []directive `json:"CloudWatchMetrics"`
}

func (e *Emitter) encode(d Doc) ([]byte, error) {
	if len(d.Metrics) == 0 || len(d.Metrics) > maxMetrics {
		return nil, fmt.Errorf("%w: %d metrics (1..%d)", ErrInvalid, len(d.Metrics), maxMetrics)
	}
	if len(d.Dimensions) > maxDimensions {
		return nil, fmt.Errorf("%w: %d dimensions (max %d)", ErrInvalid, len(d.Dimensions), maxDimensions)
	}
	root := make(map[string]any, len(d.Properties)+len(d.Dimensions)+len(d.Metrics)+2)
	maps.Copy(root, d.Properties)
	names := make([]string, 0, len(d.Dimensions))
	for _, dim := range d.Dimensions {
		if dim.Name == "" || dim.Value == "" || slices.Contains(names, dim.Name) {
			return nil, fmt.Errorf("%w: dimension %q=%q", ErrInvalid, dim.Name, dim.Value)
		}
		names = append(names, dim.Name)
		root[dim.Name] = dim.Value
	}
	defs := make([]metricDef, 0, len(d.Metrics))
	values := map[string][]float64{}
	for _, m := range d.Metrics {
		if m.Name == "" || slices.Contains(names, m.Name) {
			return nil, fmt.Errorf("%w: metric name %q", ErrInvalid, m.Name)
		}
		if _, seen := values[m.Name]; !seen {
			defs = append(defs, metricDef{Name: m.Name, Unit: m.Unit})
		}
		values[m.Name] = append(values[m.Name], m.Value)
	}
	for name, vs := range values {
		if len(vs) == 1 {
			root[name] = vs[0]
		} else {
			root[name] = vs // EMF accepts up to 100 values per metric
		}
	}
	// The dimensioned set, and the empty set that rolls everything up.
	sets := [][]string{{}}
	if len(names) > 0 {
		sets = [][]string{names, {}}
	}
	root["_aws"] = envelope{
		Timestamp:         e.now().UnixMilli(),
		CloudWatchMetrics: []directive{{Namespace: e.namespace, Dimensions: sets, Metrics: defs}},
	}
	level := d.Level
	if level == "" {
		level = "INFO"
	}
	root["level"] = level
	b, err := json.Marshal(root)
	if err != nil {
		return nil, fmt.Errorf("metrics: encode: %w", err)
	}
	return append(b, '\n'), nil
}
