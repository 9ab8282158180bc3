package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/pkg/archive"
	"github.com/edgevault/edgevault/pkg/backup"
	"github.com/edgevault/edgevault/pkg/edgevault"
	"github.com/edgevault/edgevault/pkg/pipeline"
	"github.com/edgevault/edgevault/pkg/provenance"
	"github.com/edgevault/edgevault/pkg/secrets/devvars"
)

type createOpts struct {
	conn           connFlags
	output         string
	includeSecrets bool
	includeStorage bool
	concurrency    int
	resume         bool
	aws            awsFlags
	notify         string
	estimate       bool
	rangeKeys      int
	rangeBytes     int64
	signKey        string
	repo           repoFlags
}

func (a *app) createCommand() *cobra.Command {
	var o createOpts
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Back up an EdgeBase deployment into a v1.1 archive",
		Long: `Back up every DB Durable Object, the auth and control D1 databases, the
D1/Postgres data namespaces and the config (plus R2 storage with
--include-storage and local secrets with --include-secrets) into
<output>/edgebase-backup-<UTC time>.json, or .tar.gz with storage, and a
.manifest.json with its SHA-256 beside it. The archive is only written
under its final name once every unit was backed up.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return a.runCreate(cmd.Context(), o) },
	}
	o.conn.register(cmd)
	f := cmd.Flags()
	f.StringVar(&o.output, "output", "./backup", "directory to write the archive to, or s3://bucket/prefix")
	o.aws.register(cmd)
	registerNotify(cmd, &o.notify)
	f.BoolVar(&o.estimate, "estimate", false, "list what a backup would read (DOs, objects, bytes) without downloading, and print the expected requests, time and serverless cost")
	f.BoolVar(&o.includeSecrets, "include-secrets", false, "include local secrets (.dev.vars / .edgebase/secrets.json); the archive is mode 0600 either way")
	f.BoolVar(&o.includeStorage, "include-storage", false, "include every R2 object (writes a .tar.gz)")
	f.IntVar(&o.concurrency, "concurrency", 10, "units (and object downloads) in parallel")
	f.BoolVar(&o.resume, "resume", false, "continue the last interrupted backup in --output, keeping units already stored")
	f.IntVar(&o.rangeKeys, "range-keys", backup.DefaultRangeKeys, "storage objects per page range (task)")
	f.Int64Var(&o.rangeBytes, "range-bytes", backup.DefaultRangeBytes, "storage bytes per page range (task)")
	f.StringVar(&o.signKey, "sign-key", "", "Ed25519 key file (edgevault keygen): chain the manifest to the previous one of the source and sign it")
	o.repo.register(cmd, "write a snapshot into this repository (created on first use) instead of an archive")
	return cmd
}

func (a *app) runCreate(ctx context.Context, o createOpts) error {
	start := time.Now()
	if o.concurrency < 1 {
		return failure("invalid_arguments", errors.New("--concurrency must be at least 1"))
	}
	hook, err := a.webhook(o.notify)
	if err != nil {
		return err
	}
	d, err := a.connect(&o.conn, o.concurrency)
	if err != nil {
		return err
	}
	defer d.close()
	if o.estimate {
		return a.estimateBackup(ctx, d, o)
	}
	if o.repo.where(a) != "" {
		return a.runCreateSnapshot(ctx, d, o, start)
	}
	deps := edgevault.Deps{Client: d.client, Enum: d.enum, Now: time.Now,
		Backup: edgevault.BackupOptions{Concurrency: o.concurrency, RangeKeys: o.rangeKeys, RangeBytes: o.rangeBytes, ComposeAbove: -1}}
	deps.R2 = d.r2
	if o.includeSecrets {
		deps.Secrets = devvars.New(a.env.WorkDir)
	}
	eo := embedOptions{concurrency: o.concurrency, deps: deps}
	if o.signKey != "" {
		if eo.signer, err = provenance.ReadKeyFile(o.signKey); err != nil {
			return failure("invalid_arguments", err)
		}
	}
	e, out, err := a.embedOutput(ctx, o.output, o.aws, eo)
	if err != nil {
		return failure("backup_create_failed", err)
	}
	defer e.Close()
	job, err := a.startBackup(ctx, e, d, o, out)
	if err != nil {
		return err
	}
	for _, w := range job.Warnings {
		a.warn("%s", w)
	}
	final, err := a.run(ctx, e, job, "backup")
	a.notifyEnd(ctx, e, hook, job)
	if err != nil {
		if ctx.Err() != nil {
			return &cmdError{code: "backup_create_failed", exit: ExitError,
				msg: fmt.Sprintf("interrupted; no archive was written. Run the same command with --resume to continue job %s", job.ID)}
		}
		return a.createFailed(final, err, out)
	}
	return a.reportCreate(ctx, e, job, final, out, time.Since(start))
}

// startBackup plans and launches a new backup, or resumes the newest
// unfinished one of the target with --resume.
func (a *app) startBackup(ctx context.Context, e *embedded, d *deployment, o createOpts, out string) (*events.Job, error) {
	if o.resume {
		prev, err := latestUnfinished(ctx, e.jobs, d.client.BaseURL())
		if err != nil {
			return nil, failure("backup_create_failed", err)
		}
		if prev == nil {
			return nil, failure("backup_create_failed", fmt.Errorf("nothing to resume: no unfinished backup of %s in %s", d.client.BaseURL(), out))
		}
		a.say("Resuming backup job %s (started %s)\n", prev.ID, prev.Started.Format(time.RFC3339))
		job, err := e.engine.Resume(ctx, prev.ID)
		if err != nil {
			return nil, failure("backup_create_failed", err)
		}
		return job, nil
	}
	a.say("Planning backup of %s (DO sources: %s)\n", d.client.BaseURL(), d.enum.Sources())
	job, err := e.engine.Start(ctx, events.StartRequest{Kind: events.KindBackup, Trigger: events.TriggerCLI,
		Options: events.Options{IncludeStorage: o.includeStorage, IncludeSecrets: o.includeSecrets}})
	if err != nil {
		if job != nil && job.State == events.StateFailed && job.QueuedPhase < 0 {
			// Nothing to resume from a plan that never completed.
			if !isS3(out) {
				_ = os.RemoveAll(filepath.Join(out, filepath.FromSlash(StagingPrefix), job.ID))
			}
		}
		return nil, explain(failure("backup_create_failed", err), err)
	}
	return job, nil
}

// reportCreate prints the outcome of a finished backup.
func (a *app) reportCreate(ctx context.Context, e *embedded, job, final *events.Job, out string, took time.Duration) error {
	path := outPath(out, final.Archive)
	sum := final.Summary
	if sum == nil {
		sum = &events.Summary{}
	}
	man, _ := backup.ReadManifest(ctx, e.store, final.Archive)
	if len(final.Warnings) > len(job.Warnings) {
		for _, w := range final.Warnings[len(job.Warnings):] {
			a.warn("%s", w)
		}
	}
	if final.WarningsOmitted > 0 {
		a.warn("%d more warnings not shown", final.WarningsOmitted)
	}
	server := man.Server
	if server == nil {
		server = &archive.ServerObservations{}
	}
	if a.jsonOut {
		a.printJSON(map[string]any{
			"status": "success", "file": path, "dos": sum.DOs, "dataNamespaces": sum.Namespaces,
			"rows": sum.Rows, "rowsBy": man.RowsBy, "objects": sum.Objects, "bytes": sum.ArchiveSize, "sha256": man.SHA256,
			"manifest": outPath(out, final.Manifest), "job": final.ID,
			"timestamp": strings.TrimSuffix(strings.TrimSuffix(strings.TrimPrefix(filepath.Base(path), "edgebase-backup-"), ".json"), ".tar.gz"),
			"warnings":  nonNil(final.Warnings), "warningsOmitted": final.WarningsOmitted,
			"server": server,
		})
		return nil
	}
	a.say("Backup written: %s (%s)\n", path, archive.HumanBytes(sum.ArchiveSize))
	rows := fmt.Sprintf("%d rows", sum.Rows)
	if man.RowsBy != nil {
		rows = man.RowsBy.String()
	}
	a.say("  %d DOs, %d data namespaces, %s, %d objects (%s moved) in %s\n",
		sum.DOs, sum.Namespaces, rows, sum.Objects, archive.HumanBytes(sum.Bytes), fmtDuration(took))
	if man.SHA256 != "" {
		a.say("  sha256 %s\n", man.SHA256)
	}
	if server.ContentTypesMasked > 0 || server.InternalKeysSkipped > 0 || server.ConfigRedacted {
		a.say("  server: %d content types masked, %d internal keys left out, config snapshot %s\n", server.ContentTypesMasked,
			server.InternalKeysSkipped, map[bool]string{true: "redacted by the server", false: "complete"}[server.ConfigRedacted])
	}
	return nil
}

func (a *app) createFailed(job *events.Job, err error, out string) error {
	e := failure("backup_create_failed", err)
	if job != nil {
		e.extra = map[string]any{"job": job.ID}
		if len(job.Errors) > 0 {
			units := make([]string, 0, len(job.Errors))
			for _, je := range job.Errors {
				units = append(units, je.String())
			}
			e.extra["failed"] = units
		}
		e.hint = fmt.Sprintf("no archive was written; fix the cause and run again with --resume (staging kept in %s)", outPath(out, StagingPrefix+job.ID))
	}
	return explain(e, err)
}

// latestUnfinished finds the newest backup job of target that did not
// finish.
func latestUnfinished(ctx context.Context, jobs *pipeline.Jobs, target string) (*events.Job, error) {
	var best *events.Job
	err := jobs.ListJobs(ctx, func(j *events.Job) error {
		if j.State == events.StateDone || j.Target != target {
			return nil
		}
		if best == nil || j.CreatedAt.After(best.CreatedAt) {
			best = j
		}
		return nil
	}, events.KindBackup)
	return best, err
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func (a *app) listCommand() *cobra.Command {
	var dir, from string
	var f awsFlags
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the archives in a directory (or s3://bucket/prefix) and any unfinished jobs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if from != "" {
				dir = from
			}
			if isS3(dir) {
				list, unfinished, err := a.listS3(cmd.Context(), f, dir)
				if err != nil {
					return failure("backup_list_failed", err)
				}
				return a.printList(dir, list, unfinished)
			}
			return a.runList(cmd.Context(), dir)
		},
	}
	cmd.Flags().StringVar(&dir, "output", "./backup", "directory holding the archives, or s3://bucket/prefix")
	cmd.Flags().StringVar(&from, "from", "", "the same as --output")
	f.register(cmd)
	return cmd
}

type listedArchive struct {
	File     string `json:"file"`
	Bytes    int64  `json:"bytes"`
	Modified string `json:"modified"`
	Manifest bool   `json:"manifest"`
	SHA256   string `json:"sha256,omitempty"`
}

func (a *app) runList(ctx context.Context, dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return failure("backup_list_failed", err)
	}
	var list []listedArchive
	for _, en := range entries {
		if en.IsDir() || !archive.IsArchiveName(en.Name()) {
			continue
		}
		info, err := en.Info()
		if err != nil {
			continue
		}
		la := listedArchive{File: filepath.Join(dir, en.Name()), Bytes: info.Size(), Modified: info.ModTime().UTC().Format(time.RFC3339)}
		if m, err := archive.ReadManifestFile(filepath.Join(dir, archive.ManifestName(en.Name()))); err == nil {
			la.Manifest, la.SHA256 = true, m.SHA256
		}
		list = append(list, la)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].File > list[j].File })
	var unfinished []*events.Job
	if st, err := os.Stat(filepath.Join(dir, StagingPrefix)); err == nil && st.IsDir() {
		e, err := a.embed(dir, embedOptions{concurrency: 1})
		if err == nil {
			defer e.Close()
			_ = e.jobs.ListJobs(ctx, func(j *events.Job) error {
				if j.State != events.StateDone {
					unfinished = append(unfinished, j)
				}
				return nil
			})
		}
	}
	return a.printList(dir, list, unfinished)
}

func (a *app) printList(dir string, list []listedArchive, unfinished []*events.Job) error {
	if a.jsonOut {
		jobs := make([]map[string]any, 0, len(unfinished))
		for _, j := range unfinished {
			jobs = append(jobs, map[string]any{"job": j.ID, "kind": j.Kind, "state": j.State, "target": j.Target, "created": j.CreatedAt})
		}
		if list == nil {
			list = []listedArchive{}
		}
		a.printJSON(map[string]any{"status": "success", "archives": list, "unfinished": jobs})
		return nil
	}
	if len(list) == 0 {
		a.say("no archives in %s\n", dir)
	}
	for _, la := range list {
		m := "no manifest"
		if la.Manifest {
			m = "manifest ok"
		}
		a.say("%s  %10s  %s  %s\n", la.Modified, archive.HumanBytes(la.Bytes), filepath.Base(la.File), m)
	}
	for _, j := range unfinished {
		a.say("unfinished %s job %s (%s) of %s, created %s: resume with --resume\n", j.Kind, j.ID, j.State, j.Target, j.CreatedAt.Format(time.RFC3339))
	}
	return nil
}
