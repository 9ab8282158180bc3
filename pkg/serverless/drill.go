package serverless

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/internal/metrics"
	"github.com/edgevault/edgevault/pkg/archive"
	"github.com/edgevault/edgevault/pkg/backup"
	"github.com/edgevault/edgevault/pkg/blob"
	"github.com/edgevault/edgevault/pkg/blob/fs"
	"github.com/edgevault/edgevault/pkg/discovery"
	"github.com/edgevault/edgevault/pkg/drill"
	"github.com/edgevault/edgevault/pkg/edgebase"
	"github.com/edgevault/edgevault/pkg/edgevault"
	"github.com/edgevault/edgevault/pkg/pipeline"
	"github.com/edgevault/edgevault/pkg/provenance"
	"github.com/edgevault/edgevault/pkg/queue/mem"
	"github.com/edgevault/edgevault/pkg/restore"
)

// Metric names of the drill function (the stack's drill alarms watch
// them). LastProvenRestorableAge is not emitted while no drill passed.
const (
	LastProvenRestorableAge = metrics.LastProvenRestorableAge
	DrillFailed             = metrics.DrillFailed
)

// DefaultDrillMaxBytes is the largest archive the drill function takes:
// it downloads the archive to its /tmp and the restore unpacks it there,
// so the stack sizes ephemeral storage at about twice this.
const DefaultDrillMaxBytes = 4 << 30

// Drill is the drill function: on its schedule it restores the newest
// archive of the bucket into the scratch deployment, reads everything back
// and compares it with the archive (pkg/drill), records the signed report
// as <archive>.drill.json beside the archive, and emits DrillFailed and
// LastProvenRestorableAge. The whole drill runs in one invocation, with
// the restore engine embedded (an in-process queue over /tmp): archives
// larger than Config.DrillMaxBytes are refused, and a drill that does not
// end before the soft deadline fails. Its hourly rule only emits the age.
type Drill struct {
	*base
	scratch *edgebase.Client
	enum    *discovery.Enumerator
	signer  provenance.Signer
}

// DrillInput is the drill function's event: the drill rule's is empty,
// the age rule's lambdaenv.DrillAgeInput.
type DrillInput struct {
	AgeOnly bool `json:"ageOnly"`
}

// DrillResult is what an invocation did.
type DrillResult struct {
	Archive     string `json:"archive,omitempty"`
	Report      string `json:"report,omitempty"`
	Passed      bool   `json:"passed"`
	Differences int    `json:"differences"`
	// Error says why the drill failed.
	Error string `json:"error,omitempty"`
	// LastProven is the newest archive whose drill passed, and its age.
	LastProven    string  `json:"lastProven,omitempty"`
	LastProvenAge float64 `json:"lastProvenAgeSeconds,omitempty"`
}

// NewDrill builds the drill function from the backup bucket, the scratch
// deployment and, optionally, the signer of its reports.
func NewDrill(cfg Config, rt Runtime, d Deps) (*Drill, error) {
	if d.Scratch == nil {
		return nil, fmt.Errorf("%w for drill: no scratch deployment", ErrConfig)
	}
	b, err := newBase(cfg, rt, d)
	if err != nil {
		return nil, err
	}
	enum := d.ScratchEnum
	if enum == nil {
		// Nothing lists a scratch deployment's dynamic DB instances here
		// (no Cloudflare account of its own): the restore cannot wipe
		// instances an earlier drill left that this archive lacks. The
		// drill reads back only the archive's units, so they change
		// nothing it compares.
		enum = &discovery.Enumerator{Client: d.Scratch, SkipInstances: true}
	}
	return &Drill{base: b, scratch: d.Scratch, enum: enum, signer: d.Signer}, nil
}

// Handle runs one drill (or, with AgeOnly, reports the age). A drill that
// fails is an outcome, not an error: its report and DrillFailed record
// it, and the DrillFailed alarm says so. Handle returns an error only when
// it could not look at or record anything (so the invoke dead-letter
// queue sees what no metric would).
func (h *Drill) Handle(ctx context.Context, in DrillInput) (DrillResult, error) {
	log, reqID := h.invocation(ctx)
	soft, cancel := softDeadline(ctx, h.cfg.DeadlineMargin)
	defer cancel()
	var res DrillResult
	if !in.AgeOnly {
		var failed error
		var err error
		res, failed, err = h.drillNewest(soft, log)
		if err != nil {
			failed = err
		}
		props := map[string]any{"requestId": reqID, "archive": res.Archive}
		// ERROR: an alarm watches it, and Lambda drops lines below the
		// function's log level.
		if failed != nil {
			res.Error = failed.Error()
			log.Error("drill failed", "archive", res.Archive, "err", failed)
			h.emit(metrics.Doc{Metrics: []metrics.Metric{metrics.CountOf(DrillFailed, 1)}, Properties: props, Level: "ERROR"})
		} else {
			log.Info("drill passed", "archive", res.Archive, "report", res.Report)
			h.emit(metrics.Doc{Metrics: []metrics.Metric{metrics.CountOf(DrillFailed, 0)}, Properties: props, Level: "ERROR"})
		}
		if err != nil {
			_ = h.emitAge(ctx, log, reqID, &res)
			return res, err
		}
	}
	if err := h.emitAge(ctx, log, reqID, &res); err != nil {
		return res, err
	}
	return res, nil
}

// emitAge finds the newest archive whose drill passed and emits its age.
func (h *Drill) emitAge(ctx context.Context, log *slog.Logger, reqID string, res *DrillResult) error {
	key, taken, err := h.lastProven(ctx)
	if err != nil {
		log.Error("could not find the last proven archive", "err", err)
		return err
	}
	if key == "" {
		log.Warn("no archive has a passed drill report; the age alarm sees no data and treats that as breaching")
		return nil
	}
	age := h.now().Sub(taken).Seconds()
	res.LastProven, res.LastProvenAge = key, age
	// ERROR: an alarm watches it, and Lambda drops lines below the
	// function's log level.
	h.emit(metrics.Doc{Metrics: []metrics.Metric{{Name: LastProvenRestorableAge, Unit: metrics.Seconds, Value: age}},
		Properties: map[string]any{"requestId": reqID, "archive": key}, Level: "ERROR"})
	return nil
}

// archiveTimeLayout is the time in archive names (archive.FileName).
const archiveTimeLayout = "2006-01-02T15-04-05"

// archiveTime is when an archive was taken, from its name.
func archiveTime(key string) (time.Time, bool) {
	name := path.Base(key)
	name = strings.TrimPrefix(name, "edgebase-backup-")
	if i := strings.IndexByte(name, '.'); i >= 0 {
		name = name[:i]
	}
	t, err := time.Parse(archiveTimeLayout, name)
	return t, err == nil
}

// listArchives returns the archive keys of the bucket, newest first (names
// sort by time), and which of them have a drill report.
func (h *Drill) listArchives(ctx context.Context) ([]string, map[string]bool, error) {
	var keys []string
	reports := map[string]bool{}
	err := h.store.List(ctx, h.cfg.ArchivePrefix, func(info blob.Info) error {
		rest := strings.TrimPrefix(info.Key, h.cfg.ArchivePrefix)
		switch {
		case strings.Contains(rest, "/"):
		case archive.IsArchiveName(rest):
			keys = append(keys, info.Key)
		case strings.HasSuffix(rest, ".drill.json"):
			reports[strings.TrimSuffix(info.Key, ".drill.json")] = true
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("serverless: drill: listing the archives: %w", err)
	}
	for i, j := 0, len(keys)-1; i < j; i, j = i+1, j-1 {
		keys[i], keys[j] = keys[j], keys[i]
	}
	return keys, reports, nil
}

// lastProven is the newest archive with a passed drill report.
func (h *Drill) lastProven(ctx context.Context) (string, time.Time, error) {
	keys, reports, err := h.listArchives(ctx)
	if err != nil {
		return "", time.Time{}, err
	}
	for _, key := range keys {
		if !reports[key] {
			continue
		}
		rep, err := ReadDrillReport(ctx, h.store, key)
		if err != nil {
			return "", time.Time{}, err
		}
		taken, ok := archiveTime(key)
		if !ok || rep == nil || !rep.Passed {
			continue
		}
		// As for provenAt: the report must be of the bytes the manifest
		// names.
		man, err := backup.ReadManifest(ctx, h.store, key)
		if err != nil && !errors.Is(err, blob.ErrNotExist) {
			return "", time.Time{}, fmt.Errorf("serverless: the manifest of %s: %w", key, err)
		}
		if err == nil && man.SHA256 == rep.ArchiveSHA256 {
			return key, taken, nil
		}
	}
	return "", time.Time{}, nil
}

// maxReportBytes bounds the drill report read back: a report lists at
// most drill.MaxDifferences differences, and a few lines per unit.
const maxReportBytes = 64 << 20

// ReadDrillReport reads the drill report beside an archive; nil when the
// archive has none.
func ReadDrillReport(ctx context.Context, store pipeline.BlobStore, archiveKey string) (*drill.Report, error) {
	rc, err := store.Get(ctx, drill.ReportName(archiveKey))
	if errors.Is(err, blob.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("serverless: reading the drill report of %s: %w", archiveKey, err)
	}
	defer rc.Close()
	var rep drill.Report
	if err := json.NewDecoder(io.LimitReader(rc, maxReportBytes)).Decode(&rep); err != nil {
		return nil, fmt.Errorf("serverless: the drill report of %s: %w", archiveKey, err)
	}
	return &rep, nil
}

// drillNewest drills the newest archive and records its report. failed
// says why the drill failed; err that nothing could be recorded. A drill
// that could not compare (refused, archive broken, restore failed) is
// recorded as failed with the reason, unless the archive already has a
// passed report: a scratch deployment that is down does not take back
// what an earlier drill proved.
func (h *Drill) drillNewest(ctx context.Context, log *slog.Logger) (res DrillResult, failed, err error) {
	keys, _, err := h.listArchives(ctx)
	if err != nil {
		return res, nil, err
	}
	if len(keys) == 0 {
		return res, errors.New("the bucket holds no archive to drill"), nil
	}
	key := keys[0]
	res = DrillResult{Archive: key, Report: drill.ReportName(key)}
	start := h.now()
	rep, failed := h.drill(ctx, log, key)
	if failed != nil && ctx.Err() != nil {
		failed = fmt.Errorf("the drill did not finish within the function's time (restores that take longer are drilled with `edgevault drill`): %w", failed)
	}
	if failed != nil {
		prev, err := ReadDrillReport(ctx, h.store, key)
		if err != nil {
			return res, failed, err
		}
		if prev != nil && prev.Passed {
			res.Report = ""
			return res, failed, nil
		}
		rep = &drill.Report{Archive: key, Target: h.scratch.BaseURL(), Units: []drill.UnitReport{},
			Differences: []string{"the drill did not complete: " + failed.Error()}, NotCompared: []string{}}
	}
	rep.StartedAt, rep.FinishedAt = start.UTC(), h.now().UTC()
	if err := h.record(context.WithoutCancel(ctx), rep); err != nil {
		return res, failed, err
	}
	res.Passed, res.Differences = rep.Passed, len(rep.Differences)+rep.DifferencesOmitted
	if failed == nil && !rep.Passed {
		failed = fmt.Errorf("%d differences between %s and what the scratch deployment holds after the restore; first: %s",
			res.Differences, key, strings.Join(rep.Differences[:min(3, len(rep.Differences))], "; "))
	}
	return res, failed, nil
}

// record signs the report (when there is a signer) and writes it beside
// the archive.
func (h *Drill) record(ctx context.Context, rep *drill.Report) error {
	rep.Signature = nil
	if h.signer != nil {
		sig, err := provenance.SignReport(ctx, rep, h.signer)
		if err != nil {
			return err
		}
		rep.Signature = sig
	}
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := h.store.Put(ctx, drill.ReportName(rep.Archive), strings.NewReader(string(b)+"\n")); err != nil {
		return fmt.Errorf("serverless: recording the drill report: %w", err)
	}
	return nil
}

// drill downloads the archive and its manifest, checks them, restores the
// archive into the scratch deployment and compares what it reads back.
func (h *Drill) drill(ctx context.Context, log *slog.Logger, key string) (*drill.Report, error) {
	man, err := backup.ReadManifest(ctx, h.store, key)
	if err != nil {
		return nil, fmt.Errorf("the manifest of %s: %w", key, err)
	}
	if man.Size > h.cfg.DrillMaxBytes {
		return nil, fmt.Errorf("%s is %s, more than the %s the drill function unpacks in its /tmp; drill it with `edgevault drill`", key,
			archive.HumanBytes(man.Size), archive.HumanBytes(h.cfg.DrillMaxBytes))
	}
	if man.SourceURL == "" {
		// Fail closed: without it nothing proves the scratch URL is not
		// the deployment the archive came from.
		return nil, fmt.Errorf("the manifest of %s does not name its source URL", key)
	}
	work, err := os.MkdirTemp(h.cfg.DrillWorkDir, "edgevault-drill-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	local := filepath.Join(work, path.Base(key))
	if err := h.download(ctx, key, local); err != nil {
		return nil, err
	}
	if err := h.download(ctx, archive.ManifestName(key), archive.ManifestName(local)); err != nil {
		return nil, err
	}
	if _, err := archive.Verify(ctx, local); err != nil {
		return nil, fmt.Errorf("%s does not verify: %w", key, err)
	}
	want, err := drill.ReadArchive(ctx, local)
	if err != nil {
		return nil, err
	}
	if _, err := (drill.Guard{Client: h.scratch, SourceURL: man.SourceURL}).Check(ctx, want); err != nil {
		return nil, err
	}
	log.Info("drill: restoring", "archive", key, "target", h.scratch.BaseURL())
	declare := func() error { return drill.WriteMarker(ctx, h.scratch, h.now()) }
	if err := h.restore(ctx, log, work, local, declare); err != nil {
		return nil, err
	}
	// The restore's storage wipe removed the marker.
	if err := drill.WriteMarker(ctx, h.scratch, h.now()); err != nil {
		return nil, err
	}
	got, err := drill.ReadTarget(ctx, h.scratch, want, h.cfg.Concurrency)
	if err != nil {
		return nil, err
	}
	rep := drill.Compare(want, got)
	rep.Archive, rep.Target, rep.ArchiveSHA256 = key, h.scratch.BaseURL(), man.SHA256
	return rep, nil
}

func (h *Drill) download(ctx context.Context, key, dst string) error {
	rc, err := h.store.Get(ctx, key)
	if err != nil {
		return fmt.Errorf("downloading %s: %w", key, err)
	}
	defer rc.Close()
	f, err := os.Create(dst)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, io.LimitReader(rc, h.cfg.DrillMaxBytes+1))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("downloading %s: %w", key, err)
	}
	return nil
}

// restore runs the restore engine embedded, as `edgevault drill` does:
// secrets are never restored by a drill. beforeWrite runs once the
// restore is planned, before anything is written.
func (h *Drill) restore(ctx context.Context, log *slog.Logger, work, local string, beforeWrite func() error) error {
	store, err := fs.NewWithOptions(filepath.Join(work, "engine"), fs.Options{NoSync: func(string) bool { return true }})
	if err != nil {
		return err
	}
	defer store.Close()
	q := mem.New(mem.Options{VisibilityTimeout: time.Hour})
	c := h.cfg.Concurrency
	engine, err := edgevault.New(edgevault.Deps{
		Store: store, Staging: DefaultStagingPrefix, Tasks: q, Client: h.scratch, Enum: h.enum, Now: time.Now, Log: log,
		OpenArchive: func(context.Context, string) (restore.Source, error) { return restore.FileSource(local), nil },
		Engine:      pipeline.Options{MaxAttempts: 3, Backoff: pipeline.Backoff{Base: 200 * time.Millisecond, Limit: 15 * time.Second}},
		Restore:     edgevault.RestoreOptions{Concurrency: restore.Concurrency{DOs: c, Namespaces: 4, Objects: 5}},
		NewID:       pipeline.NewJobID,
	})
	if err != nil {
		return err
	}
	job, err := engine.Prepare(ctx, events.StartRequest{Kind: events.KindRestore, Trigger: events.TriggerSchedule,
		Options: events.Options{Archive: local, SkipSecrets: true}})
	if err != nil {
		return fmt.Errorf("planning the restore: %w", err)
	}
	if err := beforeWrite(); err != nil {
		return err
	}
	if _, err := engine.Launch(ctx, job.ID); err != nil {
		return fmt.Errorf("starting the restore: %w", err)
	}
	runner := &pipeline.Runner{Engine: engine, Queue: q, Depth: q.Len, Concurrency: max(c, 1), Log: log}
	final, err := runner.Run(ctx, job.ID)
	if err != nil {
		state := ""
		if final != nil {
			state = " (target state: " + restore.TargetState(final) + ")"
		}
		return fmt.Errorf("the restore failed%s: %w", state, err)
	}
	return nil
}
