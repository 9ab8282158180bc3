package events_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	awsevents "github.com/aws/aws-lambda-go/events"

	"github.com/edgevault/edgevault/events"
)

// roundTrip decodes a fixture into T, encodes it again and requires the
// compacted fixture bytes back: field names, order and omitempty are
// frozen by the fixtures.
func roundTrip[T any](t *testing.T, name string) T {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var v T
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("%s: decode: %v", name, err)
	}
	got, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("%s: encode: %v", name, err)
	}
	var want bytes.Buffer
	if err := json.Compact(&want, raw); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("%s: round trip differs\n got %s\nwant %s", name, got, want.Bytes())
	}
	return v
}

func TestFixturesRoundTrip(t *testing.T) {
	job := roundTrip[events.Job](t, "job.json")
	if job.State != events.StateFailed || len(job.Errors) != 1 || job.Errors[0].Unit != "DO workspace:ws-1" || !job.Options.IncludeStorage {
		t.Fatalf("job decoded wrongly: %+v", job)
	}
	r := roundTrip[events.Job](t, "job_restore.json")
	if r.Kind != events.KindRestore || r.RequestedBy == "" || r.Phase != 7 || len(r.PhaseTasks) != 10 || len(r.Options.Only) != 2 {
		t.Fatalf("restore job decoded wrongly: %+v", r)
	}
	d := roundTrip[events.Job](t, "job_done.json")
	if !d.State.Terminal() || d.Archive == "" || d.Summary.ArchiveSize != 1500 {
		t.Fatalf("done job decoded wrongly: %+v", d)
	}
	task := roundTrip[events.Task](t, "task.json")
	if task.Kind != events.TaskStorage || task.Range != 2 {
		t.Fatalf("task: %+v", task)
	}
	rt := roundTrip[events.Task](t, "task_restore.json")
	if !rt.Wipes || rt.Phase != 4 || rt.SkipTables[0] != "posts_fts_data" {
		t.Fatalf("restore task: %+v", rt)
	}
	st := roundTrip[events.TaskStatus](t, "task_status.json")
	if st.State != events.TaskFailed || st.Attempts != 3 {
		t.Fatalf("status: %+v", st)
	}
	if w := roundTrip[events.TaskStatus](t, "task_status_warning.json"); !w.Warning || w.State != events.TaskDone {
		t.Fatalf("warning status: %+v", w)
	}
	if e := roundTrip[events.Envelope](t, "envelope_task.json"); e.Task == nil || e.Check != nil {
		t.Fatalf("task envelope: %+v", e)
	}
	if r := roundTrip[events.Job](t, "job_running.json"); r.State != events.StateAssembling || r.Finishing == nil || r.Dispatching == nil || r.Check != 9 || r.QueuedPhase != 0 {
		t.Fatalf("running job decoded wrongly: %+v", r)
	}
	if e := roundTrip[events.Envelope](t, "envelope_check.json"); e.Check == nil || e.Check.Job == "" || e.Check.Seq != 12 {
		t.Fatalf("check envelope: %+v", e)
	}
	if s := roundTrip[events.StartRequest](t, "start_request.json"); s.Kind != events.KindBackup || s.Trigger != events.TriggerSchedule || s.JobID != "" {
		t.Fatalf("start request: %+v", s)
	}
	if s := roundTrip[events.StartRequest](t, "start_request_restore.json"); s.JobID == "" || s.Options.Archive == "" || s.RequestedBy == "" {
		t.Fatalf("restore start request: %+v", s)
	}
}

func TestEnvelopeDecodeEncode(t *testing.T) {
	for _, name := range []string{"envelope_task.json", "envelope_check.json"} {
		raw, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		e, err := events.Decode(raw)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		b, err := e.Encode()
		if err != nil {
			t.Fatal(err)
		}
		again, err := events.Decode(b)
		if err != nil || !reflect.DeepEqual(e, again) {
			t.Fatalf("%s: re-decoded %+v, %v", name, again, err)
		}
	}
}

func TestDecodeRejectsMalformed(t *testing.T) {
	for _, body := range []string{
		``, `[]`, `{}`, `not json`,
		`{"task":{"job":"j","id":"t","kind":"do"},"check":{"job":"j"}}`,
		`{"task":{"job":"j","id":"","kind":"do"}}`,
		`{"task":{"job":"","id":"t","kind":"do"}}`,
		`{"check":{"job":""}}`,
	} {
		if _, err := events.Decode([]byte(body)); !errors.Is(err, events.ErrBadMessage) {
			t.Errorf("Decode(%q) = %v, want ErrBadMessage", body, err)
		}
	}
}

// The sample Lambda events used for local invokes decode into the
// aws-lambda-go types, and what they carry decodes as our contracts.
func TestSampleLambdaEvents(t *testing.T) {
	read := func(name string, v any) {
		t.Helper()
		raw, err := os.ReadFile(filepath.Join("testdata", "aws", name))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(raw, v); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	for _, name := range []string{"sqs_tasks.json", "sqs_check.json"} {
		var ev awsevents.SQSEvent
		read(name, &ev)
		if len(ev.Records) == 0 {
			t.Fatalf("%s: no records", name)
		}
		for _, r := range ev.Records {
			if _, err := events.Decode([]byte(r.Body)); err != nil {
				t.Fatalf("%s: record %s: %v", name, r.MessageId, err)
			}
			if r.Attributes["ApproximateReceiveCount"] == "" {
				t.Fatalf("%s: no ApproximateReceiveCount", name)
			}
		}
	}
	var sched awsevents.EventBridgeEvent
	read("eventbridge_scheduled.json", &sched)
	if sched.DetailType != "Scheduled Event" || sched.ID == "" || sched.Time.IsZero() {
		t.Fatalf("scheduled event: %+v", sched)
	}
	var constant events.StartRequest
	read("eventbridge_constant_input.json", &constant)
	if constant.Kind != events.KindBackup || constant.Trigger != events.TriggerSchedule {
		t.Fatalf("constant input: %+v", constant)
	}
	for _, name := range []string{"apigw_post_backups.json", "apigw_list_backups.json", "apigw_get_backup.json", "apigw_post_restores.json", "apigw_get_restore.json"} {
		var req awsevents.APIGatewayProxyRequest
		read(name, &req)
		if req.HTTPMethod == "" || req.Path == "" || req.RequestContext.RequestID == "" {
			t.Fatalf("%s: %+v", name, req)
		}
	}
	var s3 awsevents.S3Event
	read("s3_manifest_created.json", &s3)
	if len(s3.Records) != 1 || s3.Records[0].S3.Object.URLDecodedKey == "" {
		t.Fatalf("s3 event: %+v", s3)
	}
}
