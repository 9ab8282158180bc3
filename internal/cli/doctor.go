package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/edgevault/edgevault/pkg/archive"
	"github.com/edgevault/edgevault/pkg/cloudflare"
	"github.com/edgevault/edgevault/pkg/edgebase"
)

// Check statuses: a failed check makes doctor exit non-zero; a warning
// is something to know, not to fix.
const (
	checkOK   = "ok"
	checkWarn = "warn"
	checkFail = "fail"
	checkSkip = "skip"
)

// minFreeDisk is the free space under which a local output fails the
// disk check (a backup needs about the archive's size).
const minFreeDisk = 256 << 20

// doctorCheck is one line of the report.
type doctorCheck struct {
	Name   string `json:"name"`
	Status string `json:"status"`
	Detail string `json:"detail"`
	Hint   string `json:"hint,omitempty"`
}

type doctorOpts struct {
	conn   connFlags
	output string
	aws    awsFlags
}

func (a *app) doctorCommand() *cobra.Command {
	var o doctorOpts
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check the setup before a first backup, with a fix for each problem",
		Long: `Check, without changing anything on the deployment: which flag or
environment variable each setting came from, that the EdgeBase URL answers
(over TLS for https), that the service key is valid and scoped for the
backup API, what the server shows of itself (masked content types,
redacted config snapshot), whether dynamic DB blocks have a source for
their instances, that the Cloudflare token can list Durable Object
namespaces (Edge mode), and that the output is writable (for s3:// a probe
object under .doctor/ is written and deleted) with free disk for a local
one. Exits non-zero when any check fails.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return a.runDoctor(cmd.Context(), o) },
	}
	o.conn.register(cmd)
	cmd.Flags().StringVar(&o.output, "output", "./backup", "where backups will go: a directory or s3://bucket/prefix")
	o.aws.register(cmd)
	return cmd
}

func (a *app) runDoctor(ctx context.Context, o doctorOpts) error {
	var checks []doctorCheck
	add := func(c doctorCheck) { checks = append(checks, c) }

	add(a.doctorSettings(o))
	d, err := a.connect(&o.conn, 2)
	if err != nil {
		add(doctorCheck{Name: "connection", Status: checkFail, Detail: err.Error(), Hint: "pass --url and --service-key, or set EDGEBASE_URL and EDGEBASE_SERVICE_KEY"})
	} else {
		defer d.close()
		// One attempt per call: doctor reports, it does not wait out a
		// flaky network.
		d.client = d.client.WithRetry(edgebase.RetryPolicy{MaxAttempts: 1})
		for _, c := range a.doctorDeployment(ctx, d, o) {
			add(c)
		}
	}
	add(a.doctorOutput(ctx, o))

	failed := 0
	for _, c := range checks {
		if c.Status == checkFail {
			failed++
		}
	}
	if a.jsonOut {
		a.printJSON(map[string]any{"status": map[bool]string{true: "error", false: "success"}[failed > 0], "checks": checks})
	} else {
		marks := map[string]string{checkOK: "ok  ", checkWarn: "warn", checkFail: "FAIL", checkSkip: "skip"}
		for _, c := range checks {
			fmt.Fprintf(a.env.Stdout, "[%s] %-18s %s\n", marks[c.Status], c.Name, c.Detail)
			if c.Hint != "" && c.Status != checkOK {
				fmt.Fprintf(a.env.Stdout, "       %-18s fix: %s\n", "", c.Hint)
			}
		}
		if failed > 0 {
			fmt.Fprintf(a.env.Stdout, "%d check(s) failed\n", failed)
		} else {
			fmt.Fprintln(a.env.Stdout, "all checks passed")
		}
	}
	if failed > 0 {
		a.exitCode = ExitError
	}
	return nil
}

// source says where a setting came from.
func (a *app) source(flagVal, flagName string, envs ...string) string {
	if flagVal != "" {
		return "--" + flagName
	}
	for _, e := range envs {
		if a.env.Getenv(e) != "" {
			return "$" + e
		}
	}
	return ""
}

func (a *app) doctorSettings(o doctorOpts) doctorCheck {
	var parts []string
	missing := []string{}
	if s := a.source(o.conn.url, "url", "EDGEBASE_URL"); s != "" {
		parts = append(parts, "url from "+s)
	} else {
		missing = append(missing, "url")
	}
	switch s := a.source(o.conn.serviceKey, "service-key", "EDGEBASE_SERVICE_KEY"); {
	case s != "":
		parts = append(parts, "service key from "+s)
	case a.serviceKeyFromSecretsFile() != "":
		parts = append(parts, "service key from .edgebase/secrets.json")
	default:
		missing = append(missing, "service key")
	}
	acct := a.source(o.conn.accountID, "account-id", "CLOUDFLARE_ACCOUNT_ID")
	tok := a.source(o.conn.apiToken, "api-token", "CLOUDFLARE_API_TOKEN")
	switch {
	case acct != "" && tok != "":
		parts = append(parts, "Edge mode (account from "+acct+", token from "+tok+")")
	case acct != "" || tok != "":
		return doctorCheck{Name: "settings", Status: checkFail, Detail: "only one of the Cloudflare account id and API token is set",
			Hint: "Edge mode needs both --account-id and --api-token (or CLOUDFLARE_ACCOUNT_ID and CLOUDFLARE_API_TOKEN)"}
	}
	if o.conn.stateDir != "" {
		parts = append(parts, "state dir "+o.conn.stateDir)
	}
	if len(o.conn.instances) > 0 {
		parts = append(parts, "instances from --instances")
	}
	parts = append(parts, "output "+o.output)
	if len(missing) > 0 {
		return doctorCheck{Name: "settings", Status: checkFail, Detail: "no " + strings.Join(missing, " and ") + " (" + strings.Join(parts, ", ") + ")",
			Hint: "pass --url and --service-key, or set EDGEBASE_URL and EDGEBASE_SERVICE_KEY"}
	}
	return doctorCheck{Name: "settings", Status: checkOK, Detail: strings.Join(parts, ", ")}
}

// doctorDeployment checks the server: reachable, key, behaviour, blocks.
func (a *app) doctorDeployment(ctx context.Context, d *deployment, o doctorOpts) []doctorCheck {
	base := d.client.BaseURL()
	rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, base, nil)
	if err == nil {
		var resp *http.Response
		if resp, err = d.hc.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
		}
	}
	if err != nil {
		return []doctorCheck{
			{Name: "reachable", Status: checkFail, Detail: fmt.Sprintf("%s does not answer: %v", base, unwrapURLError(err)),
				Hint: "check the URL (scheme, host, port), that the server runs and that this machine can reach it (DNS, proxy, firewall, TLS certificate)"},
			{Name: "service key", Status: checkSkip, Detail: "not checked: the server is unreachable"},
		}
	}
	tls := "plain HTTP"
	if strings.HasPrefix(base, "https://") {
		tls = "TLS verified"
	}
	out := []doctorCheck{{Name: "reachable", Status: checkOK, Detail: base + " answers (" + tls + ")"}}

	if _, err := d.client.ListDOs(ctx, nil); err != nil {
		c := doctorCheck{Name: "service key", Status: checkFail, Detail: err.Error()}
		switch {
		case errors.Is(err, edgebase.ErrScope):
			c.Hint = "the key is valid only for other scopes: use the root service key or a scoped key with scope " + edgebase.BackupScope
		case errors.Is(err, edgebase.ErrUnauthorized), errors.Is(err, edgebase.ErrForbidden):
			c.Hint = "the server refused the key: use this deployment's root service key (SERVICE_KEY) or a scoped key with " + edgebase.BackupScope
		default:
			c.Hint = "the backup API did not answer as EdgeBase does: check that the URL is the EdgeBase server itself"
		}
		return append(out, c, doctorCheck{Name: "server", Status: checkSkip, Detail: "not checked: the key was refused"})
	}
	out = append(out, doctorCheck{Name: "service key", Status: checkOK, Detail: "valid and allowed to use the backup API (" + edgebase.BackupScope + ")"})

	cfg, _, err := d.client.Config(ctx)
	if err != nil {
		return append(out, doctorCheck{Name: "server", Status: checkFail, Detail: "reading the config snapshot: " + err.Error(),
			Hint: "the backup API's config route failed; see the server's log"})
	}
	out = append(out, a.doctorServer(ctx, d, cfg))
	if d.cf != nil {
		out = append(out, doctorCloudflare(ctx, d))
	}

	var dynamic []string
	for _, b := range cfg.Databases {
		if b.Dynamic() {
			dynamic = append(dynamic, b.Name)
		}
	}
	switch {
	case len(dynamic) == 0:
		out = append(out, doctorCheck{Name: "dynamic DB blocks", Status: checkOK, Detail: "none: list-dos finds every DB DO"})
	case d.edge || o.conn.stateDir != "" || len(o.conn.instances) > 0:
		out = append(out, doctorCheck{Name: "dynamic DB blocks", Status: checkOK, Detail: fmt.Sprintf("%s; instances from %s", strings.Join(dynamic, ", "), d.enum.Sources())})
	case o.conn.skipInstances:
		out = append(out, doctorCheck{Name: "dynamic DB blocks", Status: checkWarn, Detail: fmt.Sprintf("%s: instances left out (--skip-instances)", strings.Join(dynamic, ", "))})
	default:
		out = append(out, doctorCheck{Name: "dynamic DB blocks", Status: checkFail,
			Detail: fmt.Sprintf("%s: dynamic (one DO per instance) and no source to list the instances is configured", strings.Join(dynamic, ", ")),
			Hint:   "give Cloudflare credentials (--account-id/--api-token), the dev server's or packaged app's state directory (--state-dir) or the names (--instances ns:id,...); or --skip-instances to leave them out knowingly"})
	}
	return out
}

// passiveTypes are content types EdgeBase 0.4+ still serves as they are
// (protocol B.2); an object of any other type shows whether it masks.
func probeable(contentType string) bool {
	ct := strings.ToLower(contentType)
	for _, p := range []string{"image/", "audio/", "video/", "font/", "text/plain", "text/vtt"} {
		if strings.HasPrefix(ct, p) {
			return false
		}
	}
	return ct != ""
}

var errProbeFound = errors.New("found")

// doctorServer reports what the server shows of itself (protocol
// Appendix B): a redacted config snapshot, masked content types.
func (a *app) doctorServer(ctx context.Context, d *deployment, cfg *edgebase.Config) doctorCheck {
	var notes []string
	status := checkOK
	if n := len(cfg.Redacted); n > 0 {
		status = checkWarn
		notes = append(notes, fmt.Sprintf("config snapshot redacted (%d values withheld: archived as they are, the restore's schema check cannot compare them)", n))
	} else {
		notes = append(notes, "config snapshot complete")
	}
	var probe *edgebase.Object
	seen := 0
	_, err := d.client.ListStorage(ctx, func(o edgebase.Object) error {
		seen++
		if probeable(o.ContentType) {
			probe = &o
			return errProbeFound
		}
		if seen >= 1000 {
			return errProbeFound
		}
		return nil
	})
	switch {
	case err != nil && !errors.Is(err, errProbeFound):
		notes = append(notes, "storage listing failed: "+err.Error())
		status = checkWarn
	case probe == nil:
		notes = append(notes, "content types: no object of a non-passive type to probe")
	default:
		var info edgebase.ObjectInfo
		err := d.client.GetObject(ctx, probe.Key, func(r io.Reader, oi edgebase.ObjectInfo) error {
			info = oi
			return nil
		})
		switch {
		case err != nil:
			notes = append(notes, "probing a content type failed: "+err.Error())
			status = checkWarn
		case info.Masked:
			status = checkWarn
			notes = append(notes, fmt.Sprintf("content types masked (%s is served as %s): such objects are archived as %s", probe.ContentType, info.ServedContentType, edgebase.DefaultContentType))
		default:
			notes = append(notes, "content types served as stored")
		}
	}
	c := doctorCheck{Name: "server", Status: status, Detail: strings.Join(notes, "; ")}
	if status == checkWarn {
		c.Hint = "nothing to fix for a backup: EdgeBase 0.4+ behaves this way; exact content types can only be read through R2's S3 API"
	}
	return c
}

// unwrapURLError drops the method and URL net/http puts around a
// transport error: the report names the URL once.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// doctorOutput checks that the output can be written: for s3:// a probe
// object under .doctor/ is written and deleted; for a directory a probe
// file is, and the free disk is measured.
func (a *app) doctorOutput(ctx context.Context, o doctorOpts) doctorCheck {
	var b [8]byte
	_, _ = rand.Read(b[:])
	probe := ".doctor/probe-" + hex.EncodeToString(b[:])
	if isS3(o.output) {
		p, err := parseS3(o.output)
		if err != nil {
			return doctorCheck{Name: "output", Status: checkFail, Detail: err.Error(), Hint: "write it as s3://bucket/prefix"}
		}
		st, err := a.s3Store(ctx, o.aws, p)
		if err != nil {
			return doctorCheck{Name: "output", Status: checkFail, Detail: err.Error(), Hint: "configure AWS credentials (AWS_PROFILE, environment, SSO or an instance role) and --region"}
		}
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := st.Put(pctx, probe, strings.NewReader("edgevault doctor probe; safe to delete\n")); err != nil {
			return doctorCheck{Name: "output", Status: checkFail, Detail: fmt.Sprintf("cannot write to %s: %v", p.String(), err),
				Hint: "the bucket must exist in the region and the credentials need s3:PutObject, s3:GetObject, s3:ListBucket and s3:DeleteObject on the prefix (and kms:GenerateDataKey for an SSE-KMS bucket)"}
		}
		if err := st.Delete(pctx, probe); err != nil {
			return doctorCheck{Name: "output", Status: checkFail, Detail: fmt.Sprintf("wrote %s but cannot delete it: %v", p.Join(probe), err),
				Hint: "grant s3:DeleteObject on the prefix (staging is deleted after each backup)"}
		}
		return doctorCheck{Name: "output", Status: checkOK, Detail: p.String() + " writable (probe written and deleted)"}
	}
	dir, err := filepath.Abs(o.output)
	if err == nil {
		err = os.MkdirAll(dir, 0o700)
	}
	if err == nil {
		f := filepath.Join(dir, filepath.FromSlash(probe))
		if err = os.MkdirAll(filepath.Dir(f), 0o700); err == nil {
			if err = os.WriteFile(f, []byte("probe\n"), 0o600); err == nil {
				err = os.Remove(f)
				_ = os.Remove(filepath.Dir(f))
			}
		}
	}
	if err != nil {
		return doctorCheck{Name: "output", Status: checkFail, Detail: fmt.Sprintf("cannot write to %s: %v", o.output, err), Hint: "choose a directory you can write to with --output"}
	}
	var fs syscall.Statfs_t
	if err := syscall.Statfs(dir, &fs); err == nil {
		free := int64(fs.Bavail) * int64(fs.Bsize)
		if free < minFreeDisk {
			return doctorCheck{Name: "output", Status: checkFail, Detail: fmt.Sprintf("%s: only %s free", dir, archive.HumanBytes(free)),
				Hint: "free disk space or choose another --output (a backup needs about the archive's size, plus its staging)"}
		}
		return doctorCheck{Name: "output", Status: checkOK, Detail: fmt.Sprintf("%s writable, %s free", dir, archive.HumanBytes(free))}
	}
	return doctorCheck{Name: "output", Status: checkOK, Detail: dir + " writable"}
}

// doctorCloudflare checks Edge mode's token: it must list the account's
// Durable Object namespaces (Workers Scripts Read), and one of them should
// be EdgeBase's DatabaseDO.
func doctorCloudflare(ctx context.Context, d *deployment) doctorCheck {
	nss, err := d.cf.Namespaces(ctx)
	if err != nil {
		return doctorCheck{Name: "cloudflare", Status: checkFail, Detail: "listing Durable Object namespaces: " + err.Error(),
			Hint: "use an API token of this account with the Workers Scripts Read permission (Edge mode lists DatabaseDO instances with it)"}
	}
	n := 0
	for _, ns := range nss {
		if ns.Class == cloudflare.ClassDatabaseDO {
			n++
		}
	}
	if n == 0 {
		return doctorCheck{Name: "cloudflare", Status: checkWarn, Detail: fmt.Sprintf("the token lists %d Durable Object namespaces, none of class %s", len(nss), cloudflare.ClassDatabaseDO),
			Hint: "check --account-id: it should be the account the EdgeBase Worker is deployed to"}
	}
	return doctorCheck{Name: "cloudflare", Status: checkOK, Detail: fmt.Sprintf("token lists Durable Object namespaces (%d of class %s)", n, cloudflare.ClassDatabaseDO)}
}
