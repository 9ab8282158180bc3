package serverless

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/internal/lambdaenv"
	"github.com/edgevault/edgevault/pkg/archive"
	"github.com/edgevault/edgevault/pkg/pipeline"
)

// fullEnv gives every variable of lambdaenv a plausible value.
func fullEnv() map[string]string {
	return map[string]string{
		lambdaenv.Bucket: "b", lambdaenv.StagingPrefix: "jobs/", lambdaenv.ArchivePrefix: "backups/",
		lambdaenv.TaskQueueURL: "https://sqs/tasks", lambdaenv.ControlQueueURL: "https://sqs/control",
		lambdaenv.SchedulerFunction: "arn:aws:lambda:us-east-1:1:function:s", lambdaenv.EdgeBaseURL: "https://eb.example",
		lambdaenv.ServiceKeySecret: "arn:sk", lambdaenv.CloudflareAccount: "acct", lambdaenv.CloudflareSecret: "arn:cf",
		lambdaenv.EdgeBaseSecrets: "arn:ebs", lambdaenv.Concurrency: "7", lambdaenv.SpoolDir: "/tmp", lambdaenv.SpoolBytes: "1000", lambdaenv.DRBucket: "dr", lambdaenv.DRRoleARN: "",
		lambdaenv.DRKMSKeyARN: "", lambdaenv.KMSKeyARN: "arn:kms", lambdaenv.MetricsNamespace: "NS",
		lambdaenv.Instances: "workspace:a, workspace:b", lambdaenv.SkipInstances: "false",
		lambdaenv.DRRegion: "eu-west-1", lambdaenv.APIAllowSecrets: "false", lambdaenv.Deployed: "true",
	}
}

// Each function reads exactly the variables lambdaenv.Reads lists for it
// (plus the test-only overrides and Lambda's log level): the contract the
// stack derives environments and permissions from.
func TestConfigReadsExactlyTheContract(t *testing.T) {
	testOnly := []string{lambdaenv.AWSEndpoint, lambdaenv.S3PathStyle, lambdaenv.LambdaEndpoint, lambdaenv.CloudflareAPIURL, "AWS_LAMBDA_LOG_LEVEL"}
	env := fullEnv()
	for _, fn := range lambdaenv.Functions {
		var asked []string
		c, err := ConfigFromEnv(fn, func(k string) string { asked = append(asked, k); return env[k] })
		if err != nil {
			t.Fatalf("%s: %v", fn, err)
		}
		slices.Sort(asked)
		asked = slices.Compact(asked)
		want := append(append([]string(nil), lambdaenv.Reads[fn]...), testOnly...)
		slices.Sort(want)
		if !slices.Equal(asked, want) {
			t.Errorf("%s reads %v, lambdaenv lists %v", fn, asked, want)
		}
		if c.Bucket != "b" || c.MetricsNamespace != "NS" {
			t.Errorf("%s: %+v", fn, c)
		}
	}
	// A variable another function reads is not picked up.
	c, err := ConfigFromEnv(lambdaenv.Assembler, func(k string) string { return env[k] })
	if err != nil || c.EdgeBaseURL != "" || c.ServiceKeySecret != "" {
		t.Fatalf("assembler read EdgeBase settings: %+v %v", c, err)
	}
}

func TestConfigValidate(t *testing.T) {
	env := fullEnv()
	get := func(over map[string]string) func(string) string {
		return func(k string) string {
			if v, ok := over[k]; ok {
				return v
			}
			return env[k]
		}
	}
	c, err := ConfigFromEnv(lambdaenv.Worker, get(map[string]string{"AWS_LAMBDA_LOG_LEVEL": "DEBUG"}))
	if err != nil || c.Concurrency != 7 || c.LogLevel != slog.LevelDebug || c.StagingPrefix != "jobs/" {
		t.Fatalf("worker: %+v %v", c, err)
	}
	for name, over := range map[string]map[string]string{
		"no bucket":          {lambdaenv.Bucket: ""},
		"no service key":     {lambdaenv.ServiceKeySecret: ""},
		"bad concurrency":    {lambdaenv.Concurrency: "many"},
		"zero concurrency":   {lambdaenv.Concurrency: "0"},
		"prefix without /":   {lambdaenv.StagingPrefix: "jobs"},
		"nested prefixes":    {lambdaenv.StagingPrefix: "backups/jobs/"},
		"bad endpoint":       {lambdaenv.AWSEndpoint: "not a url"},
		"bad path style":     {lambdaenv.S3PathStyle: "maybe"},
		"bad log level":      {"AWS_LAMBDA_LOG_LEVEL": "LOUD"},
		"task queue missing": {lambdaenv.TaskQueueURL: ""},
	} {
		if _, err := ConfigFromEnv(lambdaenv.Worker, get(over)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := ConfigFromEnv(lambdaenv.Scheduler, get(map[string]string{lambdaenv.CloudflareSecret: ""})); err == nil {
		t.Error("scheduler: Edge mode with an account and no token secret accepted")
	}
	if c, err := ConfigFromEnv(lambdaenv.Scheduler, get(nil)); err != nil || fmt.Sprint(c.Instances) != "[workspace:a workspace:b]" || c.SkipInstances {
		t.Errorf("scheduler instances: %+v %v", c, err)
	}
	for name, over := range map[string]map[string]string{
		"instance without id": {lambdaenv.Instances: "workspace:a,workspace"},
		"empty namespace":     {lambdaenv.Instances: ":a"},
		"bad skip":            {lambdaenv.SkipInstances: "maybe"},
	} {
		if _, err := ConfigFromEnv(lambdaenv.Scheduler, get(over)); err == nil {
			t.Errorf("scheduler %s: accepted", name)
		}
	}
	// Without an account id the token secret the stack always creates is
	// simply not used (Docker/Direct mode enumeration).
	if c, err := ConfigFromEnv(lambdaenv.Scheduler, get(map[string]string{lambdaenv.CloudflareAccount: ""})); err != nil || c.CloudflareAccount != "" {
		t.Errorf("scheduler without an account id: %+v %v", c, err)
	}
	if _, err := ConfigFromEnv(lambdaenv.DRCopy, get(map[string]string{lambdaenv.DRBucket: ""})); err == nil {
		t.Error("drcopy without a DR bucket accepted")
	}
	if _, err := ConfigFromEnv("nope", get(nil)); !errors.Is(err, ErrConfig) {
		t.Errorf("unknown function: %v", err)
	}
}

func TestDecodeStart(t *testing.T) {
	read := func(p string) json.RawMessage {
		b, err := os.ReadFile(filepath.Join("..", "..", "events", "testdata", p))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	req, key, err := decodeStart(read("aws/eventbridge_constant_input.json"), "req-1")
	if err != nil || req.Kind != events.KindBackup || !req.Options.IncludeStorage || key != "lambda:req-1" || req.JobID != "" {
		t.Fatalf("constant input: %+v %q %v", req, key, err)
	}
	// Lambda keeps the request id across retries of an asynchronous
	// invoke: the same id, the same job.
	if a, b := deriveJobID(req.Kind, key), deriveJobID(req.Kind, "lambda:req-1"); a != b || !pipeline.ValidJobID(a) || !strings.HasPrefix(a, "backup-") {
		t.Fatalf("derived ids %q %q", a, b)
	}
	if deriveJobID(req.Kind, key) == deriveJobID(req.Kind, "lambda:req-2") {
		t.Fatal("different invocations share a job id")
	}
	req, key, err = decodeStart(read("aws/eventbridge_scheduled.json"), "req-1")
	if err != nil || req.Kind != events.KindBackup || req.Trigger != events.TriggerSchedule ||
		!strings.HasPrefix(req.JobID, "backup-20260102T030000Z-") || !strings.HasPrefix(key, "eventbridge:") {
		t.Fatalf("scheduled event: %+v %q %v", req, key, err)
	}
	again, _, _ := decodeStart(read("aws/eventbridge_scheduled.json"), "another-request")
	if again.JobID != req.JobID {
		t.Fatal("a redelivered EventBridge event got another job id")
	}
	req, _, err = decodeStart(read("start_request_restore.json"), "")
	if err != nil || req.JobID != "restore-5c7e1d2a9b3f4e60" || req.Kind != events.KindRestore {
		t.Fatalf("restore request: %+v %v", req, err)
	}
	for _, bad := range []string{`[]`, `{"kind":"purge"}`, `{"kind":"backup","option":{}}`, `{"kind":"backup","jobId":"../x"}`,
		`{"kind":"backup","jobId":"index"}`, `{"detail-type":"Scheduled Event","detail":{"kind":"backup","extra":1}}`} {
		if _, _, err := decodeStart(json.RawMessage(bad), "r"); !errors.Is(err, ErrBadInput) {
			t.Errorf("%s: %v", bad, err)
		}
	}
}

func TestArchiveKey(t *testing.T) {
	for in, want := range map[string]string{
		"edgebase-backup-2026-01-02T03-04-05.tar.gz":          "backups/edgebase-backup-2026-01-02T03-04-05.tar.gz",
		"backups/edgebase-backup-2026-01-02T03-04-05.json":    "backups/edgebase-backup-2026-01-02T03-04-05.json",
		" backups/edgebase-backup-2026-01-02T03-04-05.tgz ":   "backups/edgebase-backup-2026-01-02T03-04-05.tgz",
		"jobs/edgebase-backup-2026-01-02T03-04-05.json":       "",
		"backups/x/edgebase-backup-2026-01-02T03-04-05.json":  "",
		"backups/edgebase-backup-2026-01-02T03-04-05.json.gz": "",
		"": "",
		"../edgebase-backup-2026-01-02T03-04-05.json": "",
	} {
		got, err := ArchiveKey("backups/", in)
		if got != want || (want == "") != (err != nil) {
			t.Errorf("ArchiveKey(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func manifestOf(data []byte, cuts ...int) archive.Manifest {
	m := archive.Manifest{Version: archive.ManifestVersion, Archive: "a.tar.gz", Size: int64(len(data))}
	if len(cuts) == 0 {
		s := sha256.Sum256(data)
		m.SHA256 = hex.EncodeToString(s[:])
		return m
	}
	prev := 0
	for _, c := range append(cuts, len(data)) {
		s := sha256.Sum256(data[prev:c])
		m.Parts = append(m.Parts, archive.ManifestPart{Offset: int64(prev), Size: int64(c - prev), SHA256: hex.EncodeToString(s[:])})
		prev = c
	}
	return m
}

func TestCopyVerifier(t *testing.T) {
	data := make([]byte, 1000)
	for i := range data {
		data[i] = byte(i * 7)
	}
	// Whole-file manifest, smaller than a part: S3's checksum is the
	// object's SHA-256.
	v := newCopyVerifier(bytes.NewReader(data), manifestOf(data), 4096)
	if b, err := io.ReadAll(v); err != nil || !bytes.Equal(b, data) {
		t.Fatalf("passthrough: %v", err)
	}
	whole := sha256.Sum256(data)
	if got := v.s3Checksum(); got != base64.StdEncoding.EncodeToString(whole[:]) {
		t.Fatalf("single-part checksum %s", got)
	}
	// Parted manifest, upload parts of 300 bytes: composite of 4 parts.
	v = newCopyVerifier(iotestHalfReader{bytes.NewReader(data)}, manifestOf(data, 100, 650), 300)
	if _, err := io.ReadAll(v); err != nil {
		t.Fatal(err)
	}
	var sums []byte
	for off := 0; off < len(data); off += 300 {
		s := sha256.Sum256(data[off:min(off+300, len(data))])
		sums = append(sums, s[:]...)
	}
	c := sha256.Sum256(sums)
	if want := base64.StdEncoding.EncodeToString(c[:]) + "-4"; v.s3Checksum() != want {
		t.Fatalf("composite %s, want %s", v.s3Checksum(), want)
	}
	if !sameChecksum(base64.StdEncoding.EncodeToString(c[:]), v.s3Checksum()) || sameChecksum("x", v.s3Checksum()) {
		t.Fatal("sameChecksum")
	}
	// A corrupted byte fails the read at EOF (so an upload is aborted),
	// whichever kind of manifest.
	bad := append([]byte(nil), data...)
	bad[700] ^= 1
	for _, m := range []archive.Manifest{manifestOf(data), manifestOf(data, 100, 650)} {
		_, err := io.ReadAll(newCopyVerifier(bytes.NewReader(bad), m, 300))
		if !errors.Is(err, ErrCopyMismatch) {
			t.Fatalf("corruption not detected: %v", err)
		}
	}
	if _, err := io.ReadAll(newCopyVerifier(bytes.NewReader(data[:900]), manifestOf(data, 100, 650), 300)); !errors.Is(err, ErrCopyMismatch) {
		t.Fatalf("truncation not detected: %v", err)
	}
}

// iotestHalfReader returns at most 37 bytes per Read, so part boundaries
// fall inside reads.
type iotestHalfReader struct{ r io.Reader }

func (h iotestHalfReader) Read(p []byte) (int, error) { return h.r.Read(p[:min(len(p), 37)]) }

func TestSoftDeadline(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	soft, c2 := softDeadline(ctx, time.Minute)
	defer c2()
	dl, _ := soft.Deadline()
	full, _ := ctx.Deadline()
	if left := full.Sub(dl); left < 900*time.Millisecond || left > 1100*time.Millisecond {
		t.Fatalf("margin %s, want a quarter of 4s", left)
	}
	s2, c3 := softDeadline(context.Background(), time.Minute)
	defer c3()
	if _, ok := s2.Deadline(); ok {
		t.Fatal("deadline invented")
	}
}

func TestRetryDelayAndIDs(t *testing.T) {
	bo := DefaultConfig(lambdaenv.Worker).engineOptions().Backoff
	if bo.Delay(1) != DefaultRetryDelay || bo.Delay(3) != 4*DefaultRetryDelay || bo.Delay(40) != MaxRetryDelay {
		t.Fatal("retry delays")
	}
	if receiveCount(map[string]string{"ApproximateReceiveCount": "4"}) != 4 || receiveCount(nil) != 1 {
		t.Fatal("receive count")
	}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	if a, b := newJobID(events.KindBackup, now, "k"), newJobID(events.KindBackup, now.Add(time.Hour), "k"); a != b || !pipeline.ValidJobID(a) {
		t.Fatalf("idempotency ids %q %q", a, b)
	}
	if first, second := newJobID(events.KindBackup, now, ""), newJobID(events.KindBackup, now, ""); first == second {
		t.Fatal("random ids repeat")
	}
}
