package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/edgevault/edgevault/pkg/archive"
	"github.com/edgevault/edgevault/pkg/edgevault"

	"github.com/spf13/cobra"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/pkg/restore"
	"github.com/edgevault/edgevault/pkg/secrets/devvars"
)

type restoreOpts struct {
	conn             connFlags
	from             string
	skipSecrets      bool
	skipStorage      bool
	yes              bool
	dryRun           bool
	only             []string
	allowSchemaDrift bool
	fullStorage      bool
	fullRestore      bool
	concurrency      restore.Concurrency
	workDir          string
	aws              awsFlags
	notify           string
	repo             repoFlags
	fromSnapshot     string
	noUndo           bool
}

func (a *app) restoreCommand() *cobra.Command {
	var o restoreOpts
	cmd := &cobra.Command{
		Use:   "restore --from FILE",
		Short: "Restore an archive into an EdgeBase deployment (replaces its data)",
		Long: `Restore a v1.1 archive (.json or .tar.gz, ours or the official CLI's) into
the target, in the official order: control D1, auth D1, wipe of DOs the
archive does not have, every DB DO, data namespaces, R2 (wipe, then every
object with its content type), _users_public resync, secrets last.

R2 objects the target already holds unchanged (same key, size and etag)
are kept and not uploaded again. With R2 direct the objects the archive
lacks are deleted one by one; through the admin API, which can only wipe
everything, they make the restore wipe R2 and upload every object.
--full-storage-restore always wipes and uploads everything.

The whole archive is validated and the target's schema compared with the
archive's before the first write. Without --yes the plan is shown and you
are asked to confirm; with --json (or without a terminal) --yes is required.
--only restores selected units without the global wipes (see --help of
--only values: db:NS, db:NS:ID, storage, storage:PREFIX, auth, control, secrets).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return a.runRestore(cmd.Context(), o) },
	}
	o.conn.register(cmd)
	f := cmd.Flags()
	f.StringVar(&o.from, "from", "", "archive to restore (.json, .tar.gz or .tgz), a file or s3://bucket/key")
	o.aws.register(cmd)
	registerNotify(cmd, &o.notify)
	f.BoolVar(&o.skipSecrets, "skip-secrets", false, "do not restore secrets")
	f.BoolVar(&o.skipStorage, "skip-storage", false, "leave R2 untouched")
	f.BoolVarP(&o.yes, "yes", "y", false, "do not ask for confirmation")
	f.BoolVar(&o.dryRun, "dry-run", false, "validate and print the plan; change nothing")
	f.StringArrayVar(&o.only, "only", nil, "restore only these units (repeatable): db:NS, db:NS:ID, storage, storage:PREFIX, auth, control, secrets")
	f.BoolVar(&o.allowSchemaDrift, "allow-schema-drift", false, "restore even when the target's schema would drop or reject archived data")
	f.BoolVar(&o.fullStorage, "full-storage-restore", false, "wipe R2 and upload every object, instead of keeping the objects the target already holds unchanged (same key, size and etag)")
	f.BoolVar(&o.fullRestore, "full-restore", false, "restore every DO and object, even those the undo snapshot shows the target already holds unchanged (implies --full-storage-restore)")
	f.IntVar(&o.concurrency.DOs, "concurrency", 10, "DOs restored in parallel")
	f.IntVar(&o.concurrency.Namespaces, "namespace-concurrency", 4, "data namespaces restored in parallel")
	f.IntVar(&o.concurrency.Objects, "storage-concurrency", 5, "objects uploaded in parallel per storage range")
	f.StringVar(&o.workDir, "work-dir", "", "where the archive is unpacked while restoring (default: next to the archive)")
	f.StringVar(&o.fromSnapshot, "from-snapshot", "", "restore a repository snapshot instead of an archive: an id, a unique id prefix, or latest (needs --repo)")
	o.repo.register(cmd, "repository of --from-snapshot, and of the undo snapshot taken before the first write")
	f.BoolVar(&o.noUndo, "no-undo-snapshot", false, "with a repository configured, do not snapshot the target before restoring (the restore cannot be undone)")
	cmd.MarkFlagsOneRequired("from", "from-snapshot")
	cmd.MarkFlagsMutuallyExclusive("from", "from-snapshot")
	return cmd
}

func (a *app) runRestore(ctx context.Context, o restoreOpts) error {
	start := time.Now()
	from, err := a.checkRestoreArgs(o)
	if err != nil {
		return err
	}
	hook, err := a.webhook(o.notify)
	if err != nil {
		return err
	}
	repo, err := a.restoreRepo(ctx, o)
	if err != nil {
		return err
	}
	if repo != nil {
		defer repo.close()
	}
	var src restore.Source = restore.FileSource(from)
	switch {
	case o.fromSnapshot != "":
		if src, from, err = a.snapshotToRestore(ctx, repo, o.fromSnapshot); err != nil {
			return err
		}
	case isS3(from):
		if src, err = a.s3Source(ctx, o.aws, from); err != nil {
			return err
		}
	}
	d, err := a.connect(&o.conn, o.concurrency.DOs)
	if err != nil {
		return err
	}
	defer d.close()
	work, err := a.restoreWorkDir(o.workDir, o.from)
	if err != nil {
		return failure("backup_restore_failed", err)
	}
	defer os.RemoveAll(work)
	deps := edgevault.Deps{Client: d.client, Enum: d.enum, Now: time.Now, Secrets: devvars.New(a.env.WorkDir),
		OpenArchive: func(context.Context, string) (restore.Source, error) { return src, nil },
		Restore:     edgevault.RestoreOptions{Concurrency: o.concurrency}}
	deps.R2 = d.r2
	if a.env.retry != nil {
		deps.Restore.DORetry = *a.env.retry
	}
	e, err := a.embed(work, embedOptions{concurrency: max(o.concurrency.DOs, o.concurrency.Namespaces, 1), scratch: true, deps: deps})
	if err != nil {
		return failure("backup_restore_failed", err)
	}
	defer e.Close()

	// Without a question to ask, the undo snapshot (mostly the target's
	// dumps: server time) is taken while the archive is validated and the
	// restore planned (mostly reading it: client time). The first write
	// still waits for both.
	early := a.startUndo(ctx, repo, d, o)
	job, rep, err := a.planRestore(ctx, e, d, o, from, early == nil)
	if err != nil || o.dryRun {
		early.cancel()
		return err
	}
	var undo *snapshotResult
	if early != nil {
		if undo, err = early.wait(); err != nil {
			return err
		}
		a.showPlan(rep)
	} else {
		if ok := a.confirmRestore(o); !ok {
			return nil
		}
		if undo, err = a.undoSnapshot(ctx, repo, d, o); err != nil {
			return err
		}
	}
	unchanged, err := a.skipUnchanged(ctx, e, job, src, undo, o)
	if err != nil {
		return withUndo(err, undo)
	}
	final, err := a.executeRestore(ctx, e, job)
	a.notifyEnd(ctx, e, hook, job)
	if err != nil {
		return withUndo(err, undo)
	}
	return a.reportRestore(d, rep, final, from, time.Since(start), undo, unchanged)
}

// checkRestoreArgs refuses bad arguments before any request: nothing is
// read from the target either.
func (a *app) checkRestoreArgs(o restoreOpts) (string, error) {
	from := o.from
	switch {
	case o.fromSnapshot != "":
	case isS3(from):
		p, err := parseS3(from)
		if err != nil {
			return "", failure("invalid_arguments", err)
		}
		from = p.String()
	default:
		abs, err := filepath.Abs(o.from)
		if err != nil {
			return "", failure("backup_restore_failed", err)
		}
		from = abs
		if st, err := os.Stat(from); err != nil || st.IsDir() {
			return "", &cmdError{code: "backup_file_not_found", msg: "Backup file not found: " + from, exit: ExitError}
		}
	}
	if _, err := restore.ParseOnly(o.only); err != nil {
		return "", failure("invalid_arguments", err)
	}
	interactive := !a.jsonOut && a.env.IsTerminal(a.env.Stdin)
	if !o.yes && !o.dryRun && !interactive {
		return "", &cmdError{status: "needs_input", code: "backup_restore_confirmation_required", field: "yes", exit: ExitNeedsInput,
			msg:     "Restore replaces the target's data and needs confirmation: pass --yes (or use --dry-run to see the plan).",
			choices: []choice{{Label: "Approve restore", Value: "yes", Args: []string{"--yes"}}}}
	}
	return from, nil
}

// planRestore validates the archive and plans the restore (nothing is
// written to the target), then shows the plan; a dry run ends here.
func (a *app) planRestore(ctx context.Context, e *embedded, d *deployment, o restoreOpts, from string, show bool) (*events.Job, *restore.Report, error) {
	a.say("Validating %s and planning the restore into %s\n", from, d.client.BaseURL())
	job, err := e.engine.Prepare(ctx, events.StartRequest{Kind: events.KindRestore, Trigger: events.TriggerCLI,
		Options: events.Options{Archive: from, SkipStorage: o.skipStorage, SkipSecrets: o.skipSecrets, Only: o.only, AllowSchemaDrift: o.allowSchemaDrift, FullStorage: o.fullStorage || o.fullRestore}})
	if err != nil {
		ce := failure("backup_restore_failed", err)
		ce.hint = "nothing was written to the target"
		var de *restore.DriftError
		if errors.As(err, &de) {
			ce.code = "backup_schema_drift"
			ce.extra = map[string]any{"drift": de.Lines}
		}
		return nil, nil, explain(ce, err)
	}
	rep, err := restore.ReadReport(ctx, e.jobs, job.ID)
	if err != nil {
		return nil, nil, failure("backup_restore_failed", err)
	}
	switch {
	case o.dryRun && a.jsonOut:
		a.printJSON(map[string]any{"status": "success", "dryRun": true, "plan": rep})
	case o.dryRun:
		a.printReport(rep)
		a.say("Dry run: nothing was changed.\n")
	case show:
		a.showPlan(rep)
	}
	return job, rep, nil
}

// showPlan prints the plan of a restore about to run.
func (a *app) showPlan(rep *restore.Report) {
	if !a.jsonOut {
		a.printReport(rep)
	}
}

// confirmRestore asks the user to type "restore" unless --yes was given.
func (a *app) confirmRestore(o restoreOpts) bool {
	if o.yes {
		return true
	}
	fmt.Fprint(a.env.Stderr, "Type \"restore\" to replace the target's data: ")
	line, _ := bufio.NewReader(a.env.Stdin).ReadString('\n')
	if !strings.EqualFold(strings.TrimSpace(line), "restore") {
		a.say("Aborted.\n")
		return false
	}
	return true
}

// executeRestore launches the planned restore and runs it to its end; a
// failure says what state the target was left in.
func (a *app) executeRestore(ctx context.Context, e *embedded, job *events.Job) (*events.Job, error) {
	launched, err := e.engine.Launch(ctx, job.ID)
	final := launched
	if err == nil {
		final, err = a.run(ctx, e, job, "restore")
	}
	if err == nil {
		return final, nil
	}
	if final == nil {
		final = job
	}
	ce := failure("backup_restore_failed", err)
	if ctx.Err() != nil {
		ce.msg = "interrupted"
	}
	if len(final.Errors) > 0 {
		units := make([]string, 0, len(final.Errors))
		for _, je := range final.Errors {
			units = append(units, je.String())
		}
		ce.extra = map[string]any{"failed": units}
	}
	ce.msg = strings.TrimSuffix(ce.msg, ".") + ". Target state: " + restore.TargetState(final)
	return nil, explain(ce, err)
}

// reportRestore prints the outcome of a finished restore.
func (a *app) reportRestore(d *deployment, rep *restore.Report, final *events.Job, from string, took time.Duration, undo *snapshotResult, unchanged unchangedReport) error {
	for _, w := range final.Warnings {
		a.warn("%s", w)
	}
	st := storageOutcome(rep, final)
	if a.jsonOut {
		doc := map[string]any{"status": "success", "target": d.client.BaseURL(), "file": from,
			"dos": rep.DOCount, "dataNamespaces": len(rep.Namespaces), "rows": rep.Rows, "rowsBy": rep.RowsBy, "objects": rep.Objects,
			"orphansWiped": len(rep.Orphans), "warnings": nonNil(final.Warnings), "seconds": took.Seconds(),
			"internalKeysSkipped": rep.InternalKeysSkipped, "uncompared": rep.UncomparedCount}
		if st != nil {
			doc["storage"] = st
		}
		if undo != nil {
			doc["undoSnapshot"] = undo.ID.String()
			doc["unchangedDOs"] = unchanged.DOs
			doc["unchangedUnits"] = nonNil(unchanged.Other)
		}
		a.printJSON(doc)
		return nil
	}
	a.say("Restore complete: %d DOs, %d data namespaces, %s, %d objects (%s) into %s in %s\n",
		rep.DOCount, len(rep.Namespaces), rep.RowsBy, rep.Objects, archive.HumanBytes(rep.ObjectBytes), d.client.BaseURL(), fmtDuration(took))
	if st != nil {
		a.say("  storage: %d objects uploaded, %d unchanged and kept (not uploaded again), %d deleted\n", st.Uploaded, st.Skipped, st.Deleted)
	}
	if unchanged.DOs > 0 || len(unchanged.Other) > 0 {
		a.say("  unchanged on the target, not restored again: %d of %d DOs, %s\n", unchanged.DOs, rep.DOCount, strings.Join(append([]string{}, unchanged.Other...), ", "))
	}
	if undo != nil {
		a.say("  undo: snapshot %s\n", undo.ID)
	}
	return nil
}

// storageResult is what a finished restore did to R2.
type storageResult struct {
	Uploaded int64 `json:"uploaded"`
	Skipped  int64 `json:"skipped"` // unchanged on the target, not uploaded again
	Deleted  int64 `json:"deleted"`
}

// storageOutcome reads the storage counts off the finished job (nil when
// the restore left R2 alone). A restore's objects are its uploads.
func storageOutcome(rep *restore.Report, final *events.Job) *storageResult {
	s := final.Summary
	if s == nil || (rep.Objects == 0 && s.Deleted == 0 && !slices.ContainsFunc(rep.Wipes, func(w string) bool { return strings.HasPrefix(w, "R2:") })) {
		return nil
	}
	return &storageResult{Uploaded: s.Objects, Skipped: s.Skipped, Deleted: s.Deleted}
}

// restoreWorkDir makes the staging directory: next to the archive like
// the official CLI, else under the system temp directory.
func (a *app) restoreWorkDir(flag, from string) (string, error) {
	if flag != "" {
		return os.MkdirTemp(flag, ".edgevault-restore-")
	}
	if from == "" || isS3(from) {
		return os.MkdirTemp("", "edgevault-restore-")
	}
	if d, err := os.MkdirTemp(filepath.Dir(from), ".edgevault-restore-"); err == nil {
		return d, nil
	}
	return os.MkdirTemp("", "edgevault-restore-")
}

func (a *app) printReport(r *restore.Report) {
	a.say("Restore plan\n  archive: %s (%s, taken %s, source %s)\n  target:  %s\n", r.Archive, r.Format, r.Timestamp, r.Source, r.Target)
	if len(r.Only) > 0 {
		a.say("  only:    %s (no global wipes)\n", strings.Join(r.Only, ", "))
	}
	if len(r.Wipes) == 0 {
		a.say("  wipes:   nothing beyond the units written below\n")
	}
	for _, w := range r.Wipes {
		a.say("  WIPES:   %s\n", w)
	}
	for i, o := range r.Orphans {
		if i == 20 {
			a.say("           ... and %d more orphan DOs\n", len(r.Orphans)-20)
			break
		}
		a.say("           orphan DO %s\n", o)
	}
	a.say("  writes:  %d users, %d DOs, %d data namespaces, %d objects (%s)%s\n",
		r.Users, r.DOCount, len(r.Namespaces), r.Objects, archive.HumanBytes(r.ObjectBytes), map[bool]string{true: ", secrets", false: ""}[r.Secrets])
	a.say("           %s\n", r.RowsBy)
	for _, u := range r.DOs {
		a.say("           DO %s: %d rows\n", u.Name, u.Rows)
	}
	if r.DOCount > len(r.DOs) {
		a.say("           ... and %d more DOs\n", r.DOCount-len(r.DOs))
	}
	for _, u := range r.Namespaces {
		a.say("           namespace %s: %d rows\n", u.Name, u.Rows)
	}
	if r.InternalKeysSkipped > 0 {
		a.say("  skips:   %d server-internal storage keys (upload-grant markers; not user data)\n", r.InternalKeysSkipped)
	}
	if len(r.Uncompared) > 0 {
		a.say("  not compared with the target's schema (its config snapshot withholds them):\n")
		for _, u := range r.Uncompared {
			a.say("           %s\n", u)
		}
	}
	for _, w := range r.Warnings {
		a.say("  warning: %s\n", w)
	}
}
