package restore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"slices"
	"strings"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/pkg/archive"
	"github.com/edgevault/edgevault/pkg/blob"
	"github.com/edgevault/edgevault/pkg/discovery"
	"github.com/edgevault/edgevault/pkg/edgebase"
	"github.com/edgevault/edgevault/pkg/pipeline"
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
	Jobs   *pipeline.Jobs
	Client *edgebase.Client
	// Enum lists the target's DOs for the orphan wipe.
	Enum *discovery.Enumerator
	// Open resolves job.Options.Archive.
	Open func(ctx context.Context, name string) (Source, error)
	// RangeKeys is how many objects one storage task uploads.
	RangeKeys int
	// DirectWipe says the storage wipe goes through R2 direct (only the
	// keys the archive lacks); it changes what the report announces.
	DirectWipe bool
	Log        *slog.Logger
}

var _ pipeline.Planner = (*Planner)(nil)

// ErrNeedsTarGz is the official CLI's refusal of a .json that lists
// storage objects without --skip-storage.
var ErrNeedsTarGz = errors.New("Backup includes storage metadata but no extracted storage files were found. Restore from the .tar.gz archive or use --skip-storage.")

// DefaultRangeKeys is how many objects one storage upload task takes.
const DefaultRangeKeys = 1000

// Plan implements pipeline.Planner: read and validate, compare schemas,
// find orphans, then write the tasks phase by phase and the report the
// CLI shows before asking.
func (p *Planner) Plan(ctx context.Context, job *events.Job) error {
	sel, err := ParseOnly(job.Options.Only)
	if err != nil {
		return pipeline.Permanent(err)
	}
	cfg, raw, err := p.Client.Config(ctx)
	if err != nil {
		return fmt.Errorf("reading the target's config: %w", err)
	}
	if err := writeConfig(ctx, p.Jobs, job.ID, raw); err != nil {
		return err
	}
	src, err := p.Open(ctx, job.Options.Archive)
	if err != nil {
		return classifyIngest(fmt.Errorf("opening archive %s: %w", job.Options.Archive, err))
	}
	in := &ingester{jobs: p.Jobs, job: job.ID, target: cfg, loadedRange: -1,
		skipStorage: job.Options.SkipStorage || !sel.wantsStorage(),
		skipSecrets: job.Options.SkipSecrets || !sel.wantsSecrets(),
		rangeKeys:   p.RangeKeys}
	if in.rangeKeys <= 0 {
		in.rangeKeys = DefaultRangeKeys
	}
	sum, err := p.ingest(ctx, src, in)
	if err != nil {
		return classifyIngest(err)
	}
	hasStorage, err := checkArchive(job, sum, in, sel)
	if err != nil {
		return pipeline.Permanent(err)
	}
	orphans, onTarget, err := p.orphans(ctx, job, cfg, in, sel)
	if err != nil {
		return err
	}
	rep := &Report{Target: p.Client.BaseURL(), Archive: src.Name(), Format: sum.Format.String(),
		Timestamp: sum.Timestamp, Source: sum.Source, Only: job.Options.Only, Users: sum.Users, Orphans: orphans,
		InternalKeysSkipped: in.internal, Uncompared: in.uncompared, UncomparedCount: in.uncomparedN}
	if len(in.uncompared) < in.uncomparedN {
		rep.Uncompared = append(rep.Uncompared, fmt.Sprintf("... and %d more", in.uncomparedN-len(in.uncompared)))
	}
	w := &planWriter{ctx: ctx, p: p, job: job, in: in, sel: sel, rep: rep, sum: sum, phaseTasks: make([]int, numPhases)}
	n, err := p.Jobs.WritePlan(ctx, job.ID, func(emit func(events.Task) error) error {
		w.emit = emit
		return w.write(hasStorage, orphans, onTarget)
	})
	if err != nil {
		return err
	}
	job.Tasks, job.PhaseTasks = n, w.phaseTasks
	rep.Warnings = job.Warnings
	job.Summary = &events.Summary{DOs: rep.DOCount, Namespaces: len(rep.Namespaces), Rows: rep.Rows, Objects: rep.Objects}
	return p.Jobs.PutJSON(ctx, p.Jobs.PlanKey(job.ID, "report.json"), rep)
}

// classifyIngest marks what reading the archive cannot get past as
// permanent: an archive that is invalid, cut short, out of order, missing
// or does not match its manifest. Anything else (the staging store, a
// read that failed on the way) is transient: planning runs again.
func classifyIngest(err error) error {
	for _, perm := range []error{archive.ErrInvalid, archive.ErrTruncated, archive.ErrOrder, archive.ErrManifestMismatch,
		archive.ErrBadManifest, ErrNeedsTarGz, blob.ErrNotExist, fs.ErrNotExist} {
		if errors.Is(err, perm) {
			return pipeline.Permanent(err)
		}
	}
	return err
}

// checkArchive applies the fail-closed rules to what the ingest found and
// reports whether storage is restored.
func checkArchive(job *events.Job, sum archive.Summary, in *ingester, sel Selection) (hasStorage bool, err error) {
	hasStorageSection := slices.Contains(sum.Sections, "storage")
	switch {
	case job.Options.SkipStorage || !sel.wantsStorage():
	case sum.Format == archive.TarGz:
		hasStorage = hasStorageSection || sum.Members > 0
	case sum.Objects > 0:
		return false, ErrNeedsTarGz
	case hasStorageSection:
		job.AddWarnings("the archive lists no storage objects; R2 is left untouched")
	}
	if hasStorage {
		job.AddWarnings(storageNotices(in)...)
	}
	if in.uncomparedN > 0 {
		job.AddWarnings(fmt.Sprintf("%d archived tables or column sets could not be compared with the target's schema: its config snapshot withholds them (redacted); "+
			"the plan lists them (uncompared)", in.uncomparedN))
	}
	for _, s := range in.shards {
		job.AddWarnings(fmt.Sprintf("auth shard %q holds data, but current servers keep auth in D1 and cannot restore shards; skipped", s))
	}
	if in.driftN > 0 {
		lines := in.drift
		if in.driftN > len(lines) {
			lines = append(lines, fmt.Sprintf("... and %d more", in.driftN-len(lines)))
		}
		if !job.Options.AllowSchemaDrift {
			return false, &DriftError{Lines: lines}
		}
		for _, l := range lines {
			job.AddWarnings("schema drift (allowed): " + l)
		}
	}
	return hasStorage, sel.check(in)
}

// orphans lists the target's DOs that the archive lacks (a full restore
// wipes them) and which DOs the target has (nil when not listed).
func (p *Planner) orphans(ctx context.Context, job *events.Job, cfg *edgebase.Config, in *ingester, sel Selection) ([]string, map[string]bool, error) {
	if !sel.all {
		return nil, nil, nil
	}
	targetDOs, warnings, err := p.Enum.DOs(ctx, cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("listing the target's DOs for the orphan wipe: %w", err)
	}
	job.AddWarnings(warnings...)
	inArchive := make(map[string]bool, len(in.dos))
	for _, d := range in.dos {
		inArchive[d.Name] = true
	}
	var orphans []string
	onTarget := make(map[string]bool, len(targetDOs))
	for _, n := range targetDOs {
		onTarget[n] = true
		if !inArchive[n] {
			orphans = append(orphans, n)
		}
	}
	if len(orphans) > 0 {
		if err := p.Jobs.PutJSON(ctx, p.Jobs.PlanKey(job.ID, "orphans.json"), orphans); err != nil {
			return nil, nil, err
		}
	}
	return orphans, onTarget, nil
}

// planWriter emits a restore's tasks phase by phase, in the official
// order, and fills the report as it goes.
type planWriter struct {
	ctx        context.Context
	p          *Planner
	job        *events.Job
	in         *ingester
	sel        Selection
	rep        *Report
	sum        archive.Summary
	phaseTasks []int
	seq        int
	emit       func(events.Task) error
}

func (w *planWriter) add(phase int, t events.Task) error {
	w.seq++
	t.ID, t.Phase = pipeline.TaskID(w.seq, t.Kind), phase
	w.phaseTasks[phase]++
	return w.emit(t)
}

func (w *planWriter) write(hasStorage bool, orphans []string, onTarget map[string]bool) error {
	in, sel, rep := w.in, w.sel, w.rep
	if len(in.data) > 0 && sel.all {
		if err := w.add(PhasePrime, events.Task{Kind: events.TaskPrime, Unit: "prime D1 tables", Input: in.control}); err != nil {
			return err
		}
	}
	if in.control != "" && sel.control {
		rep.RowsBy.Control = w.sum.RowsBy.Control
		rep.Rows += rep.RowsBy.Control
		rep.Wipes = append(rep.Wipes, "CONTROL_DB: every _meta row")
		if err := w.add(PhaseControlD1, events.Task{Kind: events.TaskRestoreControlD1, Unit: "control D1", Input: in.control, Wipes: true}); err != nil {
			return err
		}
	}
	if in.auth != "" && sel.auth {
		rep.RowsBy.Auth = w.sum.RowsBy.Auth
		rep.Rows += rep.RowsBy.Auth
		rep.Wipes = append(rep.Wipes, "AUTH_DB: every user, session, admin and auth index row")
		if err := w.add(PhaseAuthD1, events.Task{Kind: events.TaskRestoreAuthD1, Unit: "auth D1", Input: in.auth, Wipes: true}); err != nil {
			return err
		}
	}
	if len(orphans) > 0 {
		rep.Wipes = append(rep.Wipes, fmt.Sprintf("%d DOs that the archive does not have (orphans)", len(orphans)))
		if err := w.add(PhaseOrphans, events.Task{Kind: events.TaskWipeDO, Unit: fmt.Sprintf("orphan wipe (%d DOs)", len(orphans)),
			Input: w.p.Jobs.PlanKey(w.job.ID, "orphans.json"), Wipes: true}); err != nil {
			return err
		}
	}
	if err := w.writeUnits(onTarget); err != nil {
		return err
	}
	if hasStorage {
		if err := w.writeStorage(); err != nil {
			return err
		}
	}
	if sel.auth && in.auth != "" {
		if err := w.add(PhaseResync, events.Task{Kind: events.TaskResync, Unit: "users resync"}); err != nil {
			return err
		}
	}
	if in.secrets != "" && sel.secrets {
		rep.Secrets = true
		if err := w.add(PhaseSecrets, events.Task{Kind: events.TaskRestoreSecrets, Unit: "secrets", Input: in.secrets}); err != nil {
			return err
		}
	}
	return nil
}

// writeUnits emits the DB DOs and data namespaces.
func (w *planWriter) writeUnits(onTarget map[string]bool) error {
	for _, d := range w.in.dos {
		if !w.sel.do(d.Name) {
			continue
		}
		w.rep.addDO(d)
		create := onTarget != nil && !onTarget[d.Name] && strings.Contains(d.Name, ":")
		if err := w.add(PhaseDOs, events.Task{Kind: events.TaskRestoreDO, Unit: "DO " + d.Name, DOName: d.Name,
			DOType: edgebase.TypeDatabase, Input: d.Part, SkipTables: d.SkipTables, Create: create}); err != nil {
			return err
		}
	}
	for _, d := range w.in.data {
		if !w.sel.data(d.Namespace) {
			continue
		}
		w.rep.addData(d)
		if err := w.add(PhaseData, events.Task{Kind: events.TaskRestoreData, Unit: "namespace " + d.Namespace,
			Namespace: d.Namespace, Input: d.Part, Wipes: true}); err != nil {
			return err
		}
	}
	return nil
}

// writeStorage emits the R2 wipe (full restores only) and the uploads:
// one task per spool, then the object ranges from the first object that
// no spool covers.
func (w *planWriter) writeStorage() error {
	in := w.in
	sp := storagePlan{Sorted: !in.unsorted, RangeKeys: in.rangeKeys}
	if w.sel.all {
		w.rep.Wipes = append(w.rep.Wipes, w.storageWipe())
		if err := w.add(PhaseWipeStorage, events.Task{Kind: events.TaskWipeStorage, Unit: "storage wipe", Wipes: true}); err != nil {
			return err
		}
		sp.WipeTask = pipeline.TaskID(w.seq, events.TaskWipeStorage)
	}
	if err := w.p.Jobs.PutJSON(w.ctx, storagePlanKey(w.p.Jobs, w.job.ID), sp); err != nil {
		return err
	}
	w.rep.Objects, w.rep.ObjectBytes = in.objects, in.objBytes
	for n := range in.spools {
		if err := w.add(PhasePutStorage, events.Task{Kind: events.TaskPutStorage, Unit: fmt.Sprintf("storage spool %d", n),
			Range: n, Input: spoolIndexKey(in, n)}); err != nil {
			return err
		}
	}
	for r := range in.ranges {
		start := int64(r) * int64(in.rangeKeys)
		if start+int64(in.rangeKeys) <= in.spooled {
			continue
		}
		if err := w.add(PhasePutStorage, events.Task{Kind: events.TaskPutStorage, Unit: fmt.Sprintf("storage range %d", r),
			Range: r, Input: rangeKey(w.p.Jobs, w.job.ID, r), Skip: max(0, in.spooled-start)}); err != nil {
			return err
		}
	}
	return nil
}

// storageWipe says what the storage wipe deletes.
func (w *planWriter) storageWipe() string {
	switch {
	case w.job.Options.FullStorage && w.p.DirectWipe:
		return "R2: every object the archive lacks (R2 direct; EdgeBase's internal keys are kept); every object is uploaded again (--full-storage-restore)"
	case w.job.Options.FullStorage:
		return "R2: every object; every object is uploaded again (--full-storage-restore)"
	case w.p.DirectWipe:
		return "R2: every object the archive lacks (R2 direct; EdgeBase's internal keys are kept); objects equal to the archive's (key, size, etag) are kept, not uploaded again"
	}
	return "R2: every object, unless the target holds only objects the archive has: then objects equal to the archive's (key, size, etag) are kept, not uploaded again"
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
	in.manifest = man
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

// storageNotices are the one-line notices of a restore that writes R2:
// internal keys skipped, and what the manifest says about masked types.
func storageNotices(in *ingester) []string {
	var out []string
	if in.internal > 0 {
		out = append(out, fmt.Sprintf("skipped %d server-internal storage keys in the archive (EdgeBase upload-grant markers under %s): "+
			"they are not user data, and EdgeBase 0.4+ refuses them", in.internal, edgebase.InternalKeyPrefix))
	}
	if m := in.manifest; m != nil && m.Server != nil && m.Server.ContentTypesMasked > 0 {
		out = append(out, fmt.Sprintf("the archive's manifest says %d objects had a masked content type when they were backed up: "+
			"the archive holds %s for them, not their real types, and they are restored with that type", m.Server.ContentTypesMasked, edgebase.DefaultContentType))
	}
	return out
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
	Target     string       `json:"target"`
	Archive    string       `json:"archive"`
	Format     string       `json:"format"`
	Timestamp  string       `json:"timestamp"`
	Source     string       `json:"source"`
	Only       []string     `json:"only,omitempty"`
	Wipes      []string     `json:"wipes"`
	Orphans    []string     `json:"orphans,omitempty"`
	Users      int64        `json:"users"`
	DOCount    int          `json:"dos"`
	DOs        []UnitReport `json:"doList,omitempty"` // the first maxReportUnits
	Namespaces []UnitReport `json:"dataNamespaces,omitempty"`
	Rows       int64        `json:"rows"`
	// RowsBy splits Rows the way every other report does; auth and
	// control count when they are restored.
	RowsBy      archive.RowCounts `json:"rowsBy"`
	Objects     int64             `json:"objects"`
	ObjectBytes int64             `json:"objectBytes"`
	Secrets     bool              `json:"secrets"`
	// InternalKeysSkipped counts server-internal storage keys (EdgeBase
	// upload-grant markers) the archive holds and the restore skips.
	InternalKeysSkipped int64 `json:"internalKeysSkipped"`
	// Uncompared lists archived tables and columns the schema-drift guard
	// could not compare because the target's config snapshot withholds
	// them (redacted); UncomparedCount counts them all.
	Uncompared      []string `json:"uncompared,omitempty"`
	UncomparedCount int      `json:"uncomparedCount,omitempty"`
	Warnings        []string `json:"warnings,omitempty"`
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
	r.RowsBy.DOs += d.Rows
	if len(r.DOs) < maxReportUnits {
		r.DOs = append(r.DOs, UnitReport{Name: d.Name, Rows: d.Rows})
	}
}

func (r *Report) addData(d dataRecord) {
	r.Rows += d.Rows
	r.RowsBy.DataNamespaces += d.Rows
	r.Namespaces = append(r.Namespaces, UnitReport{Name: d.Namespace, Rows: d.Rows})
}

// ReadReport loads the report of a planned restore.
func ReadReport(ctx context.Context, jobs *pipeline.Jobs, job string) (*Report, error) {
	var r Report
	if err := jobs.GetJSON(ctx, jobs.PlanKey(job, "report.json"), &r); err != nil {
		if errors.Is(err, blob.ErrNotExist) {
			return nil, fmt.Errorf("restore job %s has no plan report", job)
		}
		return nil, err
	}
	return &r, nil
}
