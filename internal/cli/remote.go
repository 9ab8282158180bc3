package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/edgevault/edgevault/pkg/archive"
	"github.com/edgevault/edgevault/pkg/remote"
)

// remoteFlags locate and sign for the deployed API.
type remoteFlags struct {
	api      string
	stack    string
	aws      awsFlags
	watch    bool
	interval time.Duration
}

func (f *remoteFlags) register(cmd *cobra.Command, watch bool) {
	fl := cmd.Flags()
	fl.StringVar(&f.api, "api", "", "the API's base URL (env EDGEVAULT_API; default: the stack's ApiUrl output)")
	fl.StringVar(&f.stack, "stack", remote.DefaultStack, "CloudFormation stack whose ApiUrl output names the API")
	f.aws.register(cmd)
	if watch {
		fl.BoolVar(&f.watch, "watch", false, "follow the job to its end; exit non-zero when it fails")
	}
	fl.DurationVar(&f.interval, "interval", 3*time.Second, "how often --watch polls the job")
}

func (a *app) remoteCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "remote",
		Short: "Operate a deployed edgevault stack through its signed API",
		Long: `Start backups and restores on a deployed stack, and follow and list its
jobs, through the stack's API (IAM-authorised: requests are signed with
SigV4 using the default AWS credential chain). The API's URL is read from
the stack's ApiUrl output (--stack, default EdgeVault) unless --api is
given. With --watch the command follows the job and exits non-zero when it
fails, so it can gate CI.`,
	}
	var bf remoteFlags
	var inc struct{ storage, secrets bool }
	backup := &cobra.Command{
		Use:   "backup",
		Short: "Start an on-demand backup",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.remoteStart(cmd.Context(), bf, remote.Backup, func(c *remote.Client) (string, error) {
				return c.StartBackup(cmd.Context(), remote.BackupRequest{IncludeStorage: inc.storage, IncludeSecrets: inc.secrets})
			})
		},
	}
	bf.register(backup, true)
	backup.Flags().BoolVar(&inc.storage, "include-storage", false, "include every R2 object")
	backup.Flags().BoolVar(&inc.secrets, "include-secrets", false, "include the EdgeBase secrets (the stack must allow it)")

	restoreCmd := a.remoteRestoreCommand()

	var sf remoteFlags
	status := &cobra.Command{
		Use:   "status JOB",
		Short: "Show a job's state (--watch: follow it to its end)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.remoteClient(cmd.Context(), sf)
			if err != nil {
				return err
			}
			return a.remoteFollow(cmd.Context(), c, sf, kindOfJob(args[0]), args[0])
		},
	}
	sf.register(status, true)

	var lf remoteFlags
	var list struct {
		restores bool
		limit    int
		cursor   string
	}
	listCmd := &cobra.Command{
		Use:   "list",
		Short: "List the stack's backups (or --restores), newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.remoteClient(cmd.Context(), lf)
			if err != nil {
				return err
			}
			kind := remote.Backup
			if list.restores {
				kind = remote.Restore
			}
			raw, err := c.List(cmd.Context(), kind, list.limit, list.cursor)
			if err != nil {
				return remoteFailure(err)
			}
			return a.printRemoteList(raw)
		},
	}
	lf.register(listCmd, false)
	listCmd.Flags().BoolVar(&list.restores, "restores", false, "list restore jobs instead of backups")
	listCmd.Flags().IntVar(&list.limit, "limit", 20, "jobs per page")
	listCmd.Flags().StringVar(&list.cursor, "cursor", "", "the nextCursor of the previous page")

	cmd.AddCommand(backup, restoreCmd, status, listCmd)
	return cmd
}

// remoteRestoreCommand is `remote restore`.
func (a *app) remoteRestoreCommand() *cobra.Command {
	var rf remoteFlags
	var rr remote.RestoreRequest
	restoreCmd := &cobra.Command{
		Use:   "restore --archive KEY --yes",
		Short: "Restore an archive of the backup bucket into the deployment (replaces its data)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !rr.Confirm {
				return &cmdError{status: "needs_input", code: "backup_restore_confirmation_required", field: "yes", exit: ExitNeedsInput,
					msg: "a restore replaces the target's data and needs confirmation: pass --yes"}
			}
			return a.remoteStart(cmd.Context(), rf, remote.Restore, func(c *remote.Client) (string, error) {
				return c.StartRestore(cmd.Context(), rr)
			})
		},
	}
	rf.register(restoreCmd, true)
	fl := restoreCmd.Flags()
	fl.StringVar(&rr.Archive, "archive", "", "key of the archive in the backup bucket (remote list, or a backup's status, names it)")
	fl.BoolVar(&rr.SkipStorage, "skip-storage", false, "leave R2 untouched")
	fl.BoolVar(&rr.FullStorage, "full-storage-restore", false, "wipe R2 and upload every object, instead of keeping the objects the target already holds unchanged")
	fl.BoolVar(&rr.SkipSecrets, "skip-secrets", false, "do not restore secrets")
	fl.StringArrayVar(&rr.Only, "only", nil, "restore only these units (repeatable): db:NS, db:NS:ID, storage, storage:PREFIX, auth, control, secrets")
	fl.BoolVar(&rr.AllowSchemaDrift, "allow-schema-drift", false, "restore even when the target's schema would drop archived data")
	fl.BoolVarP(&rr.Confirm, "yes", "y", false, "confirm the restore")
	_ = restoreCmd.MarkFlagRequired("archive")
	return restoreCmd
}

// kindOfJob tells a job's collection from its id ("restore-..." or
// "backup-...").
func kindOfJob(id string) remote.Kind {
	if strings.HasPrefix(id, string(remote.Restore)+"-") {
		return remote.Restore
	}
	return remote.Backup
}

// remoteClient resolves the API URL (flag, env, stack output) and the
// signing credentials.
func (a *app) remoteClient(ctx context.Context, f remoteFlags) (*remote.Client, error) {
	clients, err := a.awsClients(ctx, f.aws)
	if err != nil {
		return nil, failure("invalid_arguments", err)
	}
	api := a.flagOrEnv(f.api, "EDGEVAULT_API")
	if api == "" {
		if api, err = remote.FindAPI(ctx, clients.CloudFormation(), f.stack); err != nil {
			ce := failure("remote_api_not_found", err)
			ce.hint = "deploy the stack first, check --stack and --region, or pass --api with the ApiUrl output"
			return nil, ce
		}
	}
	region := clients.Region()
	c, err := remote.New(remote.Options{API: api, Region: region, Credentials: clients.AWS().Credentials})
	if err != nil {
		return nil, failure("invalid_arguments", err)
	}
	return c, nil
}

func remoteFailure(err error) *cmdError {
	ce := failure("remote_request_failed", err)
	var re *remote.Error
	if errors.As(err, &re) {
		ce.code = "remote_" + re.Code
		if re.Status == 403 && (re.Code == "forbidden" || re.Code == "http_403") {
			ce.hint = "the API refused the signature or the caller: use credentials allowed to invoke it (the stack's operator role) and the API's region"
		}
		if re.Job != "" {
			ce.extra = map[string]any{"job": re.Job}
		}
	}
	return ce
}

// remoteStart starts a job and, with --watch, follows it.
func (a *app) remoteStart(ctx context.Context, f remoteFlags, kind remote.Kind, start func(*remote.Client) (string, error)) error {
	c, err := a.remoteClient(ctx, f)
	if err != nil {
		return err
	}
	id, err := start(c)
	if err != nil {
		return remoteFailure(err)
	}
	if !f.watch {
		if a.jsonOut {
			a.printJSON(map[string]any{"status": "success", "job": id, "api": c.API()})
			return nil
		}
		a.say("Started %s job %s; follow it with: edgevault remote status %s --watch\n", kind, id, id)
		return nil
	}
	a.say("Started %s job %s\n", kind, id)
	return a.remoteFollow(ctx, c, f, kind, id)
}

// remoteFollow shows a job once, or with --watch follows it with the
// progress display to its end; a failed job is a non-zero exit.
func (a *app) remoteFollow(ctx context.Context, c *remote.Client, f remoteFlags, kind remote.Kind, id string) error {
	var s remote.Status
	var raw json.RawMessage
	var err error
	if f.watch {
		p := a.newProgress(string(kind))
		seen := 0
		s, raw, err = c.Watch(ctx, kind, id, f.interval, func(s remote.Status) {
			p.SetTotal(int64(s.Units.Total))
			for ; seen < s.Units.Done+s.Units.Failed; seen++ {
				p.Done(seen >= s.Units.Done)
			}
		})
		p.Close()
	} else {
		s, raw, err = c.Job(ctx, kind, id)
	}
	if err != nil {
		return remoteFailure(err)
	}
	if a.jsonOut {
		a.printJSON(map[string]any{"status": map[bool]string{true: "error", false: "success"}[s.State == "failed"], "job": raw})
	} else {
		a.printRemoteStatus(s)
	}
	if s.State == "failed" {
		a.exitCode = ExitError
	}
	return nil
}

func (a *app) printRemoteStatus(s remote.Status) {
	a.say("%s job %s: %s\n", s.Kind, s.ID, s.State)
	a.say("  units: %d of %d done, %d failed, %d retrying; %d rows, %d objects, %s\n",
		s.Units.Done, s.Units.Total, s.Units.Failed, s.Units.Retrying, s.Rows, s.Objects, archive.HumanBytes(s.Bytes))
	if s.Archive != nil && s.Archive.Key != "" {
		a.say("  archive: %s (%s)\n", s.Archive.Key, archive.HumanBytes(s.Archive.Size))
	}
	for _, e := range s.Errors {
		a.say("  failed: %s: %s\n", e.Unit, e.Message)
	}
	if s.TargetState != "" {
		a.say("  target: %s\n", s.TargetState)
	}
}

func (a *app) printRemoteList(raw json.RawMessage) error {
	if a.jsonOut {
		a.printJSON(map[string]any{"status": "success", "list": raw})
		return nil
	}
	var page struct {
		Items []struct {
			ID        string    `json:"id"`
			State     string    `json:"state"`
			CreatedAt time.Time `json:"createdAt"`
			Tasks     int       `json:"unitsTotal"`
			Failed    int       `json:"errors"`
			Archive   string    `json:"archive"`
		} `json:"items"`
		NextCursor string `json:"nextCursor"`
	}
	if err := json.Unmarshal(raw, &page); err != nil {
		return failure("remote_request_failed", fmt.Errorf("the listing is not what the API returns: %w", err))
	}
	if len(page.Items) == 0 {
		a.say("no jobs\n")
	}
	for _, s := range page.Items {
		line := fmt.Sprintf("%s  %-7s  %s  %d units, %d failed", s.ID, s.State, s.CreatedAt.UTC().Format(time.RFC3339), s.Tasks, s.Failed)
		if s.Archive != "" {
			line += "  " + s.Archive
		}
		a.say("%s\n", line)
	}
	if page.NextCursor != "" {
		a.say("more: --cursor %s\n", page.NextCursor)
	}
	return nil
}
