package restore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/pkg/archive"
	"github.com/edgevault/edgevault/pkg/backup"
	"github.com/edgevault/edgevault/pkg/blob"
	"github.com/edgevault/edgevault/pkg/edgebase"
)

// Source is the archive a restore reads.
type Source interface {
	// Name is the archive's file name or key (its suffix decides the format).
	Name() string
	Open(ctx context.Context) (io.ReadCloser, error)
	// Manifest returns the manifest beside the archive, or nil when there
	// is none.
	Manifest(ctx context.Context) (*archive.Manifest, error)
}

// Planner plans a restore job. Before anything is sent to the target it
// reads the whole archive once: validating it (format, every value, tar
// members against storage.objects, the manifest's checksums when there is
// one) while splitting it into staging parts; it compares every archived
// table with the target's schema; and it lists the target's DOs to find
// the orphans to wipe. Only a plan that passed all of that is written.
type Planner struct {
	Jobs   *backup.Jobs
	Client *edgebase.Client
	// Enum lists the target's DOs for the orphan wipe.
	Enum *backup.Enumerator
	// Open resolves job.Options.Archive.
	Open func(ctx context.Context, name string) (Source, error)
	// RangeKeys is how many objects one storage task uploads.
	RangeKeys int
	Log       *slog.Logger
}

var _ backup.Planner = (*Planner)(nil)

// ErrNeedsTarGz is the official CLI's refusal of a .json that lists
// storage objects without --skip-storage.
var ErrNeedsTarGz = errors.New("Backup includes storage metadata but no extracted storage files were found. Restore from the .tar.gz archive or use --skip-storage.")

// Plan implements backup.Planner.
func (p *Planner) Plan(ctx context.Context, job *events.Job) error {
	sel, err := ParseOnly(job.Options.Only)
	if err != nil {
		return backup.Permanent(err)
	}
	cfg, _, err := p.Client.Config(ctx)
	if err != nil {
		return fmt.Errorf("reading the target's config: %w", err)
	}
	src, err := p.Open(ctx, job.Options.Archive)
	if err != nil {
		return backup.Permanent(fmt.Errorf("opening archive %s: %w", job.Options.Archive, err))
	}
	in := &ingester{jobs: p.Jobs, job: job.ID, target: cfg, loadedRange: -1,
		skipStorage: job.Options.SkipStorage || !sel.wantsStorage(),
		skipSecrets: job.Options.SkipSecrets || !sel.wantsSecrets(),
		rangeKeys:   p.RangeKeys}
	if in.rangeKeys <= 0 {
		in.rangeKeys = backup.DefaultRangeKeys
	}
	sum, err := p.ingest(ctx, src, in)
	if err != nil {
		return backup.Permanent(err)
	}
	hasStorageSection := slices.Contains(sum.Sections, "storage")
	hasStorage := false
	switch {
	case job.Options.SkipStorage || !sel.wantsStorage():
	case sum.Format == archive.TarGz:
		hasStorage = hasStorageSection || sum.Members > 0
	case sum.Objects > 0:
		return backup.Permanent(ErrNeedsTarGz)
	case hasStorageSection:
		job.Warnings = append(job.Warnings, "the archive lists no storage objects; R2 is left untouched")
	}
	for _, s := range in.shards {
		job.Warnings = append(job.Warnings, fmt.Sprintf("auth shard %q holds data, but current servers keep auth in D1 and cannot restore shards; skipped", s))
	}
	if in.driftN > 0 {
		lines := in.drift
		if in.driftN > len(lines) {
			lines = append(lines, fmt.Sprintf("... and %d more", in.driftN-len(lines)))
		}
		if !job.Options.AllowSchemaDrift {
			return backup.Permanent(&DriftError{Lines: lines})
		}
		for _, l := range lines {
			job.Warnings = append(job.Warnings, "schema drift (allowed): "+l)
		}
	}
	if err := sel.check(in); err != nil {
		return backup.Permanent(err)
	}

	var orphans []string
	var onTarget map[string]bool // nil when the target's DOs were not listed
	if sel.all {
		targetDOs, warnings, err := p.Enum.DOs(ctx, cfg)
		if err != nil {
			return fmt.Errorf("listing the target's DOs for the orphan wipe: %w", err)
		}
		job.Warnings = append(job.Warnings, warnings...)
		inArchive := make(map[string]bool, len(in.dos))
		for _, d := range in.dos {
			inArchive[d.Name] = true
		}
		onTarget = make(map[string]bool, len(targetDOs))
		for _, n := range targetDOs {
			onTarget[n] = true
			if !inArchive[n] {
				orphans = append(orphans, n)
			}
		}
		if len(orphans) > 0 {
			if err := p.Jobs.PutJSON(ctx, p.Jobs.PlanKey(job.ID, "orphans.json"), orphans); err != nil {
				return err
			}
		}
	}

	rep := &Report{Target: p.Client.BaseURL(), Archive: src.Name(), Format: sum.Format.String(),
		Timestamp: sum.Timestamp, Source: sum.Source, Only: job.Options.Only, Users: sum.Users, Orphans: orphans}
	phaseTasks := make([]int, numPhases)
	seq := 0
	n, err := p.Jobs.WritePlan(ctx, job.ID, func(emit func(events.Task) error) error {
		add := func(phase int, t events.Task) error {
			seq++
			t.ID, t.Phase = backup.TaskID(seq, t.Kind), phase
			phaseTasks[phase]++
			return emit(t)
		}
		if len(in.data) > 0 && sel.all {
			if err := add(PhasePrime, events.Task{Kind: events.TaskPrime, Unit: "prime D1 tables"}); err != nil {
				return err
			}
		}
		if in.control != "" && sel.control {
			rep.Wipes = append(rep.Wipes, "CONTROL_DB: every _meta row")
			if err := add(PhaseControlD1, events.Task{Kind: events.TaskRestoreControlD1, Unit: "control D1", Input: in.control, Wipes: true}); err != nil {
				return err
			}
		}
		if in.auth != "" && sel.auth {
			rep.Wipes = append(rep.Wipes, "AUTH_DB: every user, session, admin and auth index row")
			if err := add(PhaseAuthD1, events.Task{Kind: events.TaskRestoreAuthD1, Unit: "auth D1", Input: in.auth, Wipes: true}); err != nil {
				return err
			}
		}
		if len(orphans) > 0 {
			rep.Wipes = append(rep.Wipes, fmt.Sprintf("%d DOs that the archive does not have (orphans)", len(orphans)))
			if err := add(PhaseOrphans, events.Task{Kind: events.TaskWipeDO, Unit: fmt.Sprintf("orphan wipe (%d DOs)", len(orphans)),
				Input: p.Jobs.PlanKey(job.ID, "orphans.json"), Wipes: true}); err != nil {
				return err
			}
		}
		for _, d := range in.dos {
			if !sel.do(d.Name) {
				continue
			}
			rep.addDO(d)
			create := onTarget != nil && !onTarget[d.Name] && strings.Contains(d.Name, ":")
			if err := add(PhaseDOs, events.Task{Kind: events.TaskRestoreDO, Unit: "DO " + d.Name, DOName: d.Name,
				DOType: edgebase.TypeDatabase, Input: d.Part, SkipTables: d.SkipTables, Create: create}); err != nil {
				return err
			}
		}
		for _, d := range in.data {
			if !sel.data(d.Namespace) {
				continue
			}
			rep.addData(d)
			if err := add(PhaseData, events.Task{Kind: events.TaskRestoreData, Unit: "namespace " + d.Namespace,
				Namespace: d.Namespace, Input: d.Part, Wipes: true}); err != nil {
				return err
			}
		}
		if hasStorage {
			if sel.all {
				rep.Wipes = append(rep.Wipes, "R2: every object")
				if err := add(PhaseWipeStorage, events.Task{Kind: events.TaskWipeStorage, Unit: "storage wipe", Wipes: true}); err != nil {
					return err
				}
			}
			rep.Objects, rep.ObjectBytes = in.objects, in.objBytes
			for n := range in.spools {
				if err := add(PhasePutStorage, events.Task{Kind: events.TaskPutStorage, Unit: fmt.Sprintf("storage spool %d", n),
					Range: n, Input: spoolIndexKey(in, n)}); err != nil {
					return err
				}
			}
			// Objects not in a spool were staged one by one: the ranges
			// from the first unspooled object on upload them.
			for r := range in.ranges {
				start := int64(r) * int64(in.rangeKeys)
				if start+int64(in.rangeKeys) <= in.spooled {
					continue
				}
				if err := add(PhasePutStorage, events.Task{Kind: events.TaskPutStorage, Unit: fmt.Sprintf("storage range %d", r),
					Range: r, Input: rangeKey(p.Jobs, job.ID, r), Skip: max(0, in.spooled-start)}); err != nil {
					return err
				}
			}
		}
		if sel.auth && in.auth != "" {
			if err := add(PhaseResync, events.Task{Kind: events.TaskResync, Unit: "users resync"}); err != nil {
				return err
			}
		}
		if in.secrets != "" && sel.secrets {
			rep.Secrets = true
			if err := add(PhaseSecrets, events.Task{Kind: events.TaskRestoreSecrets, Unit: "secrets", Input: in.secrets}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	job.Tasks = n
	job.PhaseTasks = phaseTasks
	job.Phase = 0
	for job.Phase < numPhases-1 && phaseTasks[job.Phase] == 0 {
		job.Phase++
	}
	rep.Warnings = job.Warnings
	job.Summary = &events.Summary{DOs: rep.DOCount, Namespaces: len(rep.Namespaces), Rows: rep.Rows, Objects: rep.Objects}
	return p.Jobs.PutJSON(ctx, p.Jobs.PlanKey(job.ID, "report.json"), rep)
}

// ingest reads the archive once, checking the manifest's checksums on the
// same bytes when there is a manifest.
func (p *Planner) ingest(ctx context.Context, src Source, in *ingester) (archive.Summary, error) {
	man, err := src.Manifest(ctx)
	if err != nil {
		return archive.Summary{}, fmt.Errorf("reading the manifest of %s: %w", src.Name(), err)
	}
	rc, err := src.Open(ctx)
	if err != nil {
		return archive.Summary{}, err
	}
	defer rc.Close()
	var r io.Reader = rc
	var checked chan error
	var pw *io.PipeWriter
	if man != nil {
		var pr *io.PipeReader
		pr, pw = io.Pipe()
		checked = make(chan error, 1)
		go func() {
			err := man.CheckReader(pr)
			pr.CloseWithError(err)
			checked <- err
		}()
		r = io.TeeReader(rc, pw)
	}
	sum, err := archive.Read(ctx, r, archive.DetectFormat(src.Name()), in)
	if err == nil {
		// Read stops at the end of the document; the checksum needs every
		// byte of the file.
		_, err = io.Copy(io.Discard, r)
	}
	if err == nil {
		err = in.flushRange(ctx)
	}
	if err == nil {
		err = in.closeSpool(nil)
	}
	in.abort(err)
	if pw != nil {
		pw.CloseWithError(err)
		if cerr := <-checked; err == nil && cerr != nil {
			err = fmt.Errorf("%s does not match its manifest: %w", src.Name(), cerr)
		}
	}
	return sum, err
}

// DriftError lists what the target's schema would lose or reject.
type DriftError struct{ Lines []string }

func (e *DriftError) Error() string {
	return "the target's schema differs from the archive's:\n  " + strings.Join(e.Lines, "\n  ") +
		"\nrefusing to restore; update the target's config, or pass --allow-schema-drift to restore anyway"
}

// Report says what a planned restore will wipe and write; the CLI shows
// it before asking for confirmation and for --dry-run.
type Report struct {
	Target      string       `json:"target"`
	Archive     string       `json:"archive"`
	Format      string       `json:"format"`
	Timestamp   string       `json:"timestamp"`
	Source      string       `json:"source"`
	Only        []string     `json:"only,omitempty"`
	Wipes       []string     `json:"wipes"`
	Orphans     []string     `json:"orphans,omitempty"`
	Users       int64        `json:"users"`
	DOCount     int          `json:"dos"`
	DOs         []UnitReport `json:"doList,omitempty"` // the first maxReportUnits
	Namespaces  []UnitReport `json:"dataNamespaces,omitempty"`
	Rows        int64        `json:"rows"`
	Objects     int64        `json:"objects"`
	ObjectBytes int64        `json:"objectBytes"`
	Secrets     bool         `json:"secrets"`
	Warnings    []string     `json:"warnings,omitempty"`
}

// UnitReport is one DO or namespace to be written.
type UnitReport struct {
	Name string `json:"name"`
	Rows int64  `json:"rows"`
}

const maxReportUnits = 1000

func (r *Report) addDO(d doRecord) {
	r.DOCount++
	r.Rows += d.Rows
	if len(r.DOs) < maxReportUnits {
		r.DOs = append(r.DOs, UnitReport{Name: d.Name, Rows: d.Rows})
	}
}

func (r *Report) addData(d dataRecord) {
	r.Rows += d.Rows
	r.Namespaces = append(r.Namespaces, UnitReport{Name: d.Namespace, Rows: d.Rows})
}

// ReadReport loads the report of a planned restore.
func ReadReport(ctx context.Context, jobs *backup.Jobs, job string) (*Report, error) {
	var r Report
	if err := jobs.GetJSON(ctx, jobs.PlanKey(job, "report.json"), &r); err != nil {
		if errors.Is(err, blob.ErrNotExist) {
			return nil, fmt.Errorf("restore job %s has no plan report", job)
		}
		return nil, err
	}
	return &r, nil
}
