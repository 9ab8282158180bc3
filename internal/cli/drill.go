package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/edgevault/edgevault/pkg/archive"
	"github.com/edgevault/edgevault/pkg/drill"
	"github.com/edgevault/edgevault/pkg/edgevault"
	"github.com/edgevault/edgevault/pkg/provenance"
	"github.com/edgevault/edgevault/pkg/restore"
)

type drillOpts struct {
	conn           connFlags
	from           string
	scratchConfirm string
	concurrency    int
	workDir        string
	signKey        string
	noRecord       bool
}

func (a *app) drillCommand() *cobra.Command {
	var o drillOpts
	cmd := &cobra.Command{
		Use:   "drill --from FILE --url SCRATCH_URL",
		Short: "Prove an archive restores: restore it into a scratch deployment and compare everything read back",
		Long: `Restore the archive into a scratch EdgeBase deployment (--url, --service-key),
then read every DO, D1 database, data namespace and storage object back
through the admin API and compare them with the archive: row counts and a
content hash per table, users, each object's size, SHA-256 and content
type. Secrets are never restored by a drill.

The drill refuses, before writing anything: the archive's own source URL
(from its manifest), a target whose service key is refused, and a target
holding data, unless it carries the marker a drill writes on first use
(storage object ` + drill.MarkerKey + `) or --scratch-confirm repeats its URL.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return a.runDrill(cmd.Context(), o) },
	}
	o.conn.register(cmd)
	f := cmd.Flags()
	f.StringVar(&o.from, "from", "", "archive to drill (.json, .tar.gz or .tgz)")
	f.StringVar(&o.scratchConfirm, "scratch-confirm", "", "the target URL, repeated: declare a target that holds data a scratch deployment")
	f.IntVar(&o.concurrency, "concurrency", 8, "units and objects read back in parallel")
	f.StringVar(&o.workDir, "work-dir", "", "where the archive is unpacked while restoring (default: next to the archive)")
	f.StringVar(&o.signKey, "sign-key", "", "Ed25519 key file (edgevault keygen) to sign the drill report with")
	f.BoolVar(&o.noRecord, "no-record", false, "do not write the report beside the archive (<archive>.drill.json)")
	_ = cmd.MarkFlagRequired("from")
	return cmd
}

func (a *app) runDrill(ctx context.Context, o drillOpts) error {
	start := time.Now()
	from, err := filepath.Abs(o.from)
	if err != nil {
		return failure("drill_failed", err)
	}
	// The archive first: a drill of a broken archive fails without
	// touching any deployment.
	if _, err := archive.Verify(ctx, from); err != nil {
		return failure("drill_failed", fmt.Errorf("the archive does not verify: %w", err))
	}
	var signer provenance.Signer
	if o.signKey != "" {
		if signer, err = provenance.ReadKeyFile(o.signKey); err != nil {
			return failure("invalid_arguments", err)
		}
	}
	sourceURL, archiveSHA := "", ""
	if m, err := archive.ReadManifestFile(archive.ManifestName(from)); err == nil {
		sourceURL, archiveSHA = m.SourceURL, m.SHA256
	} else if !errors.Is(err, fs.ErrNotExist) {
		return failure("drill_failed", err)
	}
	if sourceURL == "" {
		a.warn("the archive does not name its source URL; the drill relies on the target being empty or declared scratch")
	}
	want, err := drill.ReadArchive(ctx, from)
	if err != nil {
		return failure("drill_failed", err)
	}
	d, err := a.connect(&o.conn, o.concurrency)
	if err != nil {
		return err
	}
	defer d.close()
	guard := drill.Guard{Client: d.client, SourceURL: sourceURL, Confirm: o.scratchConfirm}
	if _, err := guard.Check(ctx, want); err != nil {
		e := failure("drill_refused", err)
		e.hint = "nothing was written to the target"
		return e
	}
	// The marker is the first write, once the restore is planned (the
	// archive checked against the target's schema).
	declare := func() error {
		if err := drill.WriteMarker(ctx, d.client, time.Now()); err != nil {
			return failure("drill_failed", err)
		}
		return nil
	}
	if err := a.drillRestore(ctx, d, o, from, declare); err != nil {
		return err
	}
	// The restore's storage wipe removed the marker: put it back, so the
	// next drill finds the target declared.
	if err := drill.WriteMarker(ctx, d.client, time.Now()); err != nil {
		return failure("drill_failed", err)
	}
	if a.env.drillRestored != nil {
		if err := a.env.drillRestored(ctx); err != nil {
			return failure("drill_failed", err)
		}
	}
	got, err := drill.ReadTarget(ctx, d.client, want, o.concurrency)
	if err != nil {
		return failure("drill_failed", err)
	}
	rep := drill.Compare(want, got)
	rep.Archive, rep.Target, rep.StartedAt, rep.FinishedAt = from, d.client.BaseURL(), start.UTC(), time.Now().UTC()
	rep.ArchiveSHA256 = archiveSHA
	if signer != nil {
		if rep.Signature, err = provenance.SignReport(ctx, rep, signer); err != nil {
			return failure("drill_failed", err)
		}
	}
	if !o.noRecord {
		if err := writeJSONFile(drill.ReportName(from), rep); err != nil {
			a.warn("the drill report was not recorded: %v", err)
		}
	}
	return a.reportDrill(rep)
}

// drillRestore runs the restore engine as backup restore --yes
// --skip-secrets would.
func (a *app) drillRestore(ctx context.Context, d *deployment, o drillOpts, from string, beforeWrite func() error) error {
	work, err := a.restoreWorkDir(o.workDir, from)
	if err != nil {
		return failure("drill_failed", err)
	}
	defer os.RemoveAll(work)
	ro := restoreOpts{conn: o.conn, from: from, yes: true, skipSecrets: true,
		concurrency: restore.Concurrency{DOs: o.concurrency, Namespaces: 4, Objects: 5}}
	deps := edgevault.Deps{Client: d.client, Enum: d.enum, Now: time.Now,
		OpenArchive: func(context.Context, string) (restore.Source, error) { return restore.FileSource(from), nil },
		Restore:     edgevault.RestoreOptions{Concurrency: ro.concurrency}}
	deps.R2 = d.r2
	if a.env.retry != nil {
		deps.Restore.DORetry = *a.env.retry
	}
	e, err := a.embed(work, embedOptions{concurrency: max(ro.concurrency.DOs, 1), scratch: true, deps: deps})
	if err != nil {
		return failure("drill_failed", err)
	}
	defer e.Close()
	job, _, err := a.planRestore(ctx, e, d, ro, from, true)
	if err != nil {
		return err
	}
	if err := beforeWrite(); err != nil {
		return err
	}
	if _, err := a.executeRestore(ctx, e, job); err != nil {
		return err
	}
	return nil
}

// writeJSONFile writes v to path atomically, mode 0600.
func writeJSONFile(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".drill-*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(append(b, '\n'))
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	return err
}

func (a *app) reportDrill(r *drill.Report) error {
	if !r.Passed {
		e := &cmdError{code: "drill_failed", exit: ExitError,
			msg: fmt.Sprintf("drill failed: %d differences between the archive and what the target holds after the restore", len(r.Differences)+r.DifferencesOmitted)}
		if a.jsonOut {
			e.extra = map[string]any{"report": r}
		} else {
			a.sayDrill(r)
		}
		return e
	}
	if a.jsonOut {
		a.printJSON(map[string]any{"status": "success", "report": r})
		return nil
	}
	a.sayDrill(r)
	return nil
}

func (a *app) sayDrill(r *drill.Report) {
	verdict := "PASSED"
	if !r.Passed {
		verdict = "FAILED"
	}
	a.say("Drill %s: %s restored into %s\n", verdict, filepath.Base(r.Archive), r.Target)
	a.say("  compared %d DOs, %d data namespaces, %d tables, %d rows, %d users, %d objects (%s)\n",
		r.DOs, r.DataNamespaces, r.Tables, r.Rows, r.Users, r.Objects, archive.HumanBytes(r.ObjectBytes))
	for i, d := range r.Differences {
		if i == 20 {
			a.say("  ... and %d more differences (--json lists up to %d)\n", len(r.Differences)-20+r.DifferencesOmitted, drill.MaxDifferences)
			break
		}
		a.say("  DIFFERS: %s\n", d)
	}
	for _, n := range r.NotCompared {
		a.say("  not compared: %s\n", n)
	}
}
