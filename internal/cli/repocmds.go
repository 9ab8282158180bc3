package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/edgevault/edgevault/pkg/archive"
	"github.com/edgevault/edgevault/pkg/repository"
)

// snapshotDoc is one snapshot as the repository commands print it.
type snapshotDoc struct {
	ID           string    `json:"id"`
	Short        string    `json:"short"`
	Time         time.Time `json:"time"`
	SourceURL    string    `json:"sourceURL"`
	Units        int       `json:"units"`
	UnitBytes    int64     `json:"unitBytes"`
	Objects      int64     `json:"objects"`
	StorageBytes int64     `json:"storageBytes"`
	Bytes        int64     `json:"bytes"`
	Tags         []string  `json:"tags"`
	Parent       string    `json:"parent,omitempty"`
	Verified     bool      `json:"verified"`
}

func newSnapshotDoc(s repository.SnapshotInfo, verified bool) snapshotDoc {
	d := snapshotDoc{ID: s.ID.String(), Short: shortSnap(s.ID), Time: s.Time.UTC(), SourceURL: s.SourceURL,
		Units: len(s.Units), Objects: s.Storage.Objects, StorageBytes: s.Storage.Bytes, Tags: nonNil(s.Tags), Verified: verified}
	for _, u := range s.Units {
		d.UnitBytes += u.Size
	}
	d.Bytes = d.UnitBytes + d.StorageBytes
	if !s.Parent.IsZero() {
		d.Parent = s.Parent.String()
	}
	return d
}

func shortSnap(id repository.ID) string { return id.String()[:8] }

// withRepo opens the repository of f for one command and closes it after.
func (a *app) withRepo(ctx context.Context, f *repoFlags, aws awsFlags, fn func(*openedRepo) error) error {
	r, _, err := a.openRepo(ctx, f, aws, false)
	if err != nil {
		return err
	}
	defer r.close()
	return fn(r)
}

func (a *app) snapshotsCommand() *cobra.Command {
	var rf repoFlags
	var aws awsFlags
	cmd := &cobra.Command{
		Use:   "snapshots",
		Short: "List the snapshots in a repository, oldest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withRepo(cmd.Context(), &rf, aws, func(r *openedRepo) error { return a.runSnapshots(cmd.Context(), r) })
		},
	}
	rf.register(cmd, "repository to list")
	aws.register(cmd)
	return cmd
}

func (a *app) runSnapshots(ctx context.Context, r *openedRepo) error {
	snaps, err := r.ListSnapshots(ctx)
	if err != nil {
		return repoFailure(r.location, err)
	}
	verified, err := r.VerifiedSnapshots(ctx)
	if err != nil {
		return repoFailure(r.location, err)
	}
	docs := make([]snapshotDoc, 0, len(snaps))
	for _, s := range snaps {
		_, v := verified[s.ID]
		docs = append(docs, newSnapshotDoc(s, v))
	}
	if a.jsonOut {
		a.printJSON(map[string]any{"status": "success", "repository": r.location, "snapshots": docs})
		return nil
	}
	if len(docs) == 0 {
		a.say("No snapshots in %s\n", r.location)
		return nil
	}
	a.say("%-8s  %-20s  %-8s  %5s  %8s  %10s  %s\n", "ID", "TIME", "VERIFIED", "UNITS", "OBJECTS", "SIZE", "SOURCE / TAGS")
	for _, d := range docs {
		v := ""
		if d.Verified {
			v = "yes"
		}
		src := d.SourceURL
		if len(d.Tags) > 0 {
			src += " [" + strings.Join(d.Tags, ",") + "]"
		}
		a.say("%-8s  %-20s  %-8s  %5d  %8d  %10s  %s\n", d.Short, d.Time.Format(time.RFC3339), v, d.Units, d.Objects, archive.HumanBytes(d.Bytes), src)
	}
	a.say("%d snapshots in %s\n", len(docs), r.location)
	return nil
}

type repoExportOpts struct {
	repo   repoFlags
	aws    awsFlags
	output string
}

func (a *app) repoExportCommand() *cobra.Command {
	var o repoExportOpts
	cmd := &cobra.Command{
		Use:   "export SNAPSHOT -o FILE|DIR",
		Short: "Write a repository snapshot out as a v1.1 archive (id, unique id prefix or latest)",
		Long: `Materialise a snapshot of the repository as a v1.1 archive with its
.manifest.json, as backup create writes them: a .json, or a .tar.gz when
the snapshot holds storage objects. -o names the file (its suffix must be
the snapshot's format) or a directory, which gets the name backup create
would give (edgebase-backup-<backup time>.json|.tar.gz). The archive is
written under a temporary name, checked, and renamed only when complete.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withRepo(cmd.Context(), &o.repo, o.aws, func(r *openedRepo) error { return a.runRepoExport(cmd.Context(), r, args[0], o) })
		},
	}
	o.repo.register(cmd, "repository to read")
	o.aws.register(cmd)
	cmd.Flags().StringVarP(&o.output, "output", "o", "", "archive file (.json or .tar.gz) or directory to write it to")
	return cmd
}

func (a *app) runRepoExport(ctx context.Context, r *openedRepo, ref string, o repoExportOpts) error {
	if o.output == "" {
		return failure("invalid_arguments", errors.New("backup export needs -o FILE or -o DIR"))
	}
	info, err := r.FindSnapshot(ctx, ref)
	if err != nil {
		if errors.Is(err, repository.ErrCorrupt) || errors.Is(err, repository.ErrMissing) {
			return repoFailure(r.location, err)
		}
		return &cmdError{code: "snapshot_not_found", exit: ExitError, msg: err.Error(),
			hint: "name a snapshot by id, a unique id prefix or latest (edgevault snapshots lists them)"}
	}
	f, err := r.ExportFormat(ctx, info.Snapshot)
	if err != nil {
		return repoFailure(r.location, err)
	}
	path, err := exportTarget(o.output, f, info)
	if err != nil {
		return failure("invalid_arguments", err)
	}
	sum, err := a.writeExport(ctx, r.Repository, info, f, path)
	if err != nil {
		return failure("backup_export_failed", err)
	}
	if a.jsonOut {
		a.printJSON(map[string]any{"status": "success", "file": path, "manifest": archive.ManifestName(path),
			"snapshot": info.ID.String(), "format": f, "bytes": sum.Bytes, "sha256": sum.SHA256, "objects": sum.Objects})
		return nil
	}
	a.say("Snapshot %s exported: %s (%s)\n", shortSnap(info.ID), path, archive.HumanBytes(sum.Bytes))
	a.say("  sha256 %s; manifest %s\n", sum.SHA256, archive.ManifestName(path))
	return nil
}

// exportTarget is the archive path -o names: a file whose suffix must be
// the format's, or a directory (existing, or written with a trailing
// slash) that gets backup create's file name.
func exportTarget(out string, f archive.Format, s repository.SnapshotInfo) (string, error) {
	if isS3(out) {
		return "", fmt.Errorf("-o %s: export writes a local file", out)
	}
	tarball := f == archive.TarGz
	if st, err := os.Stat(out); err == nil && st.IsDir() || strings.HasSuffix(out, string(os.PathSeparator)) {
		start, err := time.Parse(time.RFC3339Nano, s.Header.Timestamp)
		if err != nil {
			start = s.Time
		}
		if err := os.MkdirAll(out, 0o700); err != nil {
			return "", err
		}
		out = filepath.Join(out, archive.FileName(start, tarball))
	} else {
		isTar := strings.HasSuffix(out, ".tar.gz") || strings.HasSuffix(out, ".tgz")
		switch {
		case isTar && !tarball:
			return "", fmt.Errorf("-o %s: snapshot %s holds no storage object bytes, so it exports as a .json archive, not a .tar.gz", out, shortSnap(s.ID))
		case strings.HasSuffix(out, ".json") && tarball:
			return "", fmt.Errorf("-o %s: snapshot %s holds storage objects, so it exports as a .tar.gz archive, not a .json", out, shortSnap(s.ID))
		case !isTar && !strings.HasSuffix(out, ".json"):
			return "", fmt.Errorf("-o %s: name a .json or .tar.gz file, or a directory", out)
		}
	}
	abs, err := filepath.Abs(out)
	if err != nil {
		return "", err
	}
	if _, err := os.Lstat(abs); err == nil {
		return "", fmt.Errorf("%s already exists", abs)
	}
	return abs, nil
}

// writeExport writes the archive under a temporary name beside path,
// checks it (archive.Verify), renames it to path and writes its manifest.
// On failure nothing is left under path.
func (a *app) writeExport(ctx context.Context, r *repository.Repository, s repository.SnapshotInfo, f archive.Format, path string) (archive.Summary, error) {
	var sum archive.Summary
	ext := ".json"
	if f == archive.TarGz {
		ext = ".tar.gz"
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".edgevault-export-*"+ext) // mode 0600
	if err != nil {
		return sum, err
	}
	defer os.Remove(tmp.Name())
	bw := bufio.NewWriterSize(tmp, 256<<10)
	err = r.Export(ctx, s.Snapshot, bw, f)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return sum, fmt.Errorf("exporting snapshot %s: %w", shortSnap(s.ID), err)
	}
	if sum, err = archive.Verify(ctx, tmp.Name()); err != nil {
		return sum, fmt.Errorf("the export of snapshot %s does not verify: %w", shortSnap(s.ID), err)
	}
	m := archive.NewManifest(sum, time.Now(), "")
	m.Archive, m.SourceURL, m.Server = filepath.Base(path), s.SourceURL, s.Server
	if _, err := os.Lstat(path); err == nil {
		return sum, fmt.Errorf("%s appeared while exporting; not replaced", path)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return sum, err
	}
	if err := archive.WriteManifestFile(archive.ManifestName(path), m); err != nil {
		_ = os.Remove(path)
		return sum, err
	}
	sum.File = path
	return sum, nil
}

// runRepoVerify is backup verify --repo: the repository's structure, and
// with --read-data every pack re-read (then each snapshot checked is
// recorded as verified), or a --read-data-subset of them.
func (a *app) runRepoVerify(ctx context.Context, o verifyOpts) error {
	if o.deep || len(o.trust) > 0 {
		return failure("invalid_arguments", errors.New("--deep and --trust check archives; a repository check takes --read-data or --read-data-subset"))
	}
	if o.readData && o.subset != "" {
		return failure("invalid_arguments", errors.New("--read-data reads every pack; --read-data-subset only some: pass one"))
	}
	pct := 0.0
	if o.subset != "" {
		var err error
		if pct, err = parsePercent(o.subset); err != nil {
			return err
		}
	}
	return a.withRepo(ctx, &o.repo, o.aws, func(r *openedRepo) error {
		var rep repository.CheckReport
		var err error
		switch {
		case o.readData || pct == 100:
			rep, err = r.Verify(ctx)
		default:
			rep, err = r.Check(ctx, pct > 0, pct)
		}
		if len(rep.Errors) > 0 || errors.Is(err, repository.ErrCorrupt) || errors.Is(err, repository.ErrMissing) {
			e := failure("repository_check_failed", fmt.Errorf("repository %s: %d problem(s):\n  %s", r.location, len(rep.Errors), strings.Join(rep.Errors, "\n  ")))
			e.extra = map[string]any{"report": rep, "errors": nonNil(rep.Errors)}
			return e
		}
		if err != nil {
			return repoFailure(r.location, err)
		}
		return a.reportRepoVerify(r.location, rep, o.readData || pct == 100, pct)
	})
}

func (a *app) reportRepoVerify(loc string, rep repository.CheckReport, full bool, pct float64) error {
	if a.jsonOut {
		a.printJSON(map[string]any{"status": "success", "repository": loc, "report": rep, "readData": full || pct > 0})
		return nil
	}
	a.say("Repository %s: %d snapshots, %d packs (%d indexed), %d chunks referenced: structure ok\n", loc, rep.Snapshots, rep.Packs, rep.IndexedPacks, rep.Chunks)
	switch {
	case full:
		a.say("Read data: all %d packs re-read, %d chunks re-hashed: ok\n", rep.PacksRead, rep.BlobsRead)
		a.say("Verified: %d snapshots recorded as verified (forget keeps each source's newest)\n", len(rep.Verified))
	case pct > 0:
		a.say("Read data: %d packs (%g%%) re-read, %d chunks re-hashed: ok (a subset records nothing as verified)\n", rep.PacksRead, pct, rep.BlobsRead)
	default:
		a.say("Data not read: pass --read-data to re-read and re-hash every chunk\n")
	}
	if n := len(rep.Unreferenced); n > 0 {
		a.say("%d packs are in no index (left by an interrupted backup); prune removes them\n", n)
	}
	return nil
}

type forgetOpts struct {
	repo   repoFlags
	aws    awsFlags
	policy repository.Policy
	within string
	apply  bool
}

func (a *app) forgetCommand() *cobra.Command {
	var o forgetOpts
	cmd := &cobra.Command{
		Use:   "forget --keep-... [--apply]",
		Short: "Decide which snapshots a retention policy keeps; --apply removes the others",
		Long: `Apply a retention policy, restic's way, to each source's snapshots: each
--keep-hourly/daily/weekly/monthly/yearly N keeps the newest snapshot of
each of the last N hours/days/..., --keep-last N the newest N,
--keep-within D every snapshot within D of the newest (D like 36h, 7d,
2w); -1 means no limit; a snapshot any rule keeps is kept. The newest
verified snapshot of each source (backup verify --repo --read-data) is
always kept. Without --apply nothing is deleted: the decisions and their
reasons are printed. With --apply the snapshots not kept are removed;
edgevault prune then frees the data only they used.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return a.runForget(cmd.Context(), o) },
	}
	o.repo.register(cmd, "repository")
	o.aws.register(cmd)
	f := cmd.Flags()
	f.IntVar(&o.policy.Last, "keep-last", 0, "keep the newest N snapshots")
	f.IntVar(&o.policy.Hourly, "keep-hourly", 0, "keep the newest snapshot of each of the last N hours")
	f.IntVar(&o.policy.Daily, "keep-daily", 0, "keep the newest snapshot of each of the last N days")
	f.IntVar(&o.policy.Weekly, "keep-weekly", 0, "keep the newest snapshot of each of the last N ISO weeks")
	f.IntVar(&o.policy.Monthly, "keep-monthly", 0, "keep the newest snapshot of each of the last N months")
	f.IntVar(&o.policy.Yearly, "keep-yearly", 0, "keep the newest snapshot of each of the last N years")
	f.StringVar(&o.within, "keep-within", "", "keep every snapshot taken within this long of the newest (36h, 7d, 2w, 1w3d12h)")
	f.BoolVar(&o.apply, "apply", false, "remove the snapshots the policy does not keep (default: a dry run)")
	return cmd
}

// forgetEntry is one decision as forget prints it.
type forgetEntry struct {
	snapshotDoc
	Reasons []string `json:"reasons"`
}

func (a *app) runForget(ctx context.Context, o forgetOpts) error {
	p := o.policy
	if o.within != "" {
		d, err := parseWithin(o.within)
		if err != nil {
			return failure("invalid_arguments", err)
		}
		p.Within = d
	}
	for _, n := range []int{p.Last, p.Hourly, p.Daily, p.Weekly, p.Monthly, p.Yearly} {
		if n < -1 {
			return failure("invalid_arguments", fmt.Errorf("a --keep-* count is %d: want N >= 0, or -1 for no limit", n))
		}
	}
	if p.Empty() {
		return failure("invalid_arguments", errors.New("forget needs a policy: pass at least one of --keep-last, --keep-hourly, --keep-daily, --keep-weekly, --keep-monthly, --keep-yearly, --keep-within"))
	}
	return a.withRepo(ctx, &o.repo, o.aws, func(r *openedRepo) error {
		ds, err := r.Forget(ctx, p, !o.apply)
		if err != nil {
			return repoFailure(r.location, err)
		}
		return a.reportForget(r.location, ds, o.apply)
	})
}

func (a *app) reportForget(loc string, ds []repository.ForgetDecision, apply bool) error {
	keep, remove, locked := []forgetEntry{}, []forgetEntry{}, []forgetEntry{}
	for _, d := range ds {
		e := forgetEntry{snapshotDoc: newSnapshotDoc(d.Snapshot, d.Verified), Reasons: nonNil(d.Reasons)}
		switch {
		case d.Keep:
			keep = append(keep, e)
		case d.Locked:
			locked = append(locked, e)
		default:
			remove = append(remove, e)
		}
	}
	if a.jsonOut {
		a.printJSON(map[string]any{"status": "success", "repository": loc, "dryRun": !apply, "keep": keep, "remove": remove, "locked": locked})
		return nil
	}
	src := "\x00"
	for _, d := range ds {
		if d.Snapshot.SourceURL != src {
			src = d.Snapshot.SourceURL
			a.say("Source %s:\n", src)
		}
		verdict := map[bool]string{true: "remove", false: "would remove"}[apply]
		switch {
		case d.Keep:
			verdict = "keep"
		case d.Locked:
			verdict = "locked"
		}
		a.say("  %-12s  %s  %s  %s\n", verdict, shortSnap(d.Snapshot.ID), d.Snapshot.Time.UTC().Format(time.RFC3339), strings.Join(d.Reasons, ", "))
	}
	switch {
	case !apply:
		a.say("Dry run: %d kept, %d would be removed. Run again with --apply to remove them, then edgevault prune to free their data.\n", len(keep), len(remove))
	default:
		a.say("%d kept, %d removed. Run edgevault prune to free the data only they used.\n", len(keep), len(remove))
	}
	if len(locked) > 0 {
		a.warn("%d snapshots could not be removed: the store refused the delete (locked); they stay", len(locked))
	}
	return nil
}

var withinRE = regexp.MustCompile(`^(?:(\d+)w)?(?:(\d+)d)?(.*)$`)

// parseWithin reads a Go duration with optional leading weeks and days:
// 36h, 7d, 2w, 1w3d12h.
func parseWithin(v string) (time.Duration, error) {
	m := withinRE.FindStringSubmatch(strings.TrimSpace(v))
	var d time.Duration
	for i, unit := range []time.Duration{7 * 24 * time.Hour, 24 * time.Hour} {
		if m[i+1] != "" {
			n, err := strconv.Atoi(m[i+1])
			if err != nil {
				return 0, fmt.Errorf("--keep-within %q: %w", v, err)
			}
			d += time.Duration(n) * unit
		}
	}
	if m[3] != "" {
		rest, err := time.ParseDuration(m[3])
		if err != nil {
			return 0, fmt.Errorf("--keep-within %q: want a duration like 36h, 7d, 2w or 1w3d12h", v)
		}
		d += rest
	}
	if d <= 0 {
		return 0, fmt.Errorf("--keep-within %q: want a positive duration", v)
	}
	return d, nil
}

// defaultGrace outlasts any backup: a pack marked unneeded is deleted by
// a prune at least this long after the mark.
const defaultGrace = 24 * time.Hour

func (a *app) pruneCommand() *cobra.Command {
	var rf repoFlags
	var aws awsFlags
	var graceFlag time.Duration
	cmd := &cobra.Command{
		Use:   "prune",
		Short: "Free the data no snapshot needs any more (two phases: mark, then delete after --grace)",
		Long: `Delete the packs no snapshot needs, in two phases so a backup running
alongside is safe without locks: a prune marks the packs it finds
unneeded; a later prune, once --grace has passed since the mark, deletes
those still unneeded (a backup that reused one meanwhile rescues it).
--grace must exceed your longest backup. Packs the store refuses to
delete (a bucket lock, retention) are skipped, kept marked and reported.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if graceFlag < 0 {
				return failure("invalid_arguments", errors.New("--grace must not be negative"))
			}
			return a.withRepo(cmd.Context(), &rf, aws, func(r *openedRepo) error {
				rep, err := r.Prune(cmd.Context(), repository.PruneOptions{Grace: graceFlag})
				if err != nil {
					return repoFailure(r.location, err)
				}
				return a.reportPrune(r.location, rep, graceFlag)
			})
		},
	}
	rf.register(cmd, "repository")
	aws.register(cmd)
	cmd.Flags().DurationVar(&graceFlag, "grace", defaultGrace, "how long a pack stays marked before a prune deletes it; longer than any backup")
	return cmd
}

func (a *app) reportPrune(loc string, rep repository.PruneReport, grace time.Duration) error {
	if a.jsonOut {
		a.printJSON(map[string]any{"status": "success", "repository": loc, "marked": rep.Marked, "waiting": rep.Waiting,
			"rescued": rep.Rescued, "deleted": len(rep.Deleted), "deletedPacks": nonNilIDs(rep.Deleted), "freed": rep.Freed,
			"locked": nonNil(rep.Locked), "grace": grace.String()})
		return nil
	}
	a.say("Repository %s:\n", loc)
	a.say("  %d packs newly marked unneeded, %d marked packs waiting out the grace period (%s)\n", rep.Marked, rep.Waiting, grace)
	if rep.Rescued > 0 {
		a.say("  %d marked packs needed again (a backup reused them), unmarked\n", rep.Rescued)
	}
	a.say("  %d packs deleted, %s freed\n", len(rep.Deleted), archive.HumanBytes(rep.Freed))
	if len(rep.Locked) > 0 {
		a.warn("%d files could not be deleted: the store refused (locked); they stay marked and a later prune tries again:\n  %s",
			len(rep.Locked), strings.Join(rep.Locked, "\n  "))
	}
	return nil
}

func nonNilIDs(ids []repository.ID) []repository.ID {
	if ids == nil {
		return []repository.ID{}
	}
	return ids
}
