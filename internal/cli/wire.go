package cli

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/pkg/blob/fs"
	"github.com/edgevault/edgevault/pkg/blob/spill"
	"github.com/edgevault/edgevault/pkg/cloudflare"
	"github.com/edgevault/edgevault/pkg/discovery"
	"github.com/edgevault/edgevault/pkg/edgebase"
	"github.com/edgevault/edgevault/pkg/edgevault"
	"github.com/edgevault/edgevault/pkg/pipeline"
	"github.com/edgevault/edgevault/pkg/provenance"
	"github.com/edgevault/edgevault/pkg/queue/mem"
	"github.com/edgevault/edgevault/pkg/sensitive"
)

// StagingPrefix is where the embedded runtime keeps job state inside the
// output directory (what --resume picks up).
const StagingPrefix = ".edgevault/jobs/"

// connFlags are the flags that point at a deployment, shared by every
// command that talks to one.
type connFlags struct {
	url, serviceKey string
	// Edge mode (Cloudflare API) and other DO enumeration sources.
	accountID, apiToken, script string
	stateDir                    string
	instances                   []string
	skipInstances               bool
	allowUnresolved             bool
	cloudflareURL               string
	r2                          r2Flags
}

func (c *connFlags) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&c.url, "url", "", "EdgeBase URL (env EDGEBASE_URL)")
	f.StringVar(&c.serviceKey, "service-key", "", "service key (env EDGEBASE_SERVICE_KEY, else SERVICE_KEY in ./.edgebase/secrets.json)")
	f.StringVar(&c.accountID, "account-id", "", "Cloudflare account id for Edge mode (env CLOUDFLARE_ACCOUNT_ID)")
	f.StringVar(&c.apiToken, "api-token", "", "Cloudflare API token with Workers Scripts Read (env CLOUDFLARE_API_TOKEN)")
	f.StringVar(&c.script, "script", "", "Edge mode: only Durable Object namespaces of this Worker script")
	f.StringVar(&c.stateDir, "state-dir", "", "local state directory to find dynamic DB instances in: a dev server's (.wrangler/state, --persist-to) or a packaged app's (<user data dir>/<app>/state)")
	f.StringSliceVar(&c.instances, "instances", nil, "dynamic DB instance names to include (ns:id,...), or @FILE with one per line")
	f.BoolVar(&c.skipInstances, "skip-instances", false, "knowingly leave out dynamic DB instances no source can list")
	f.BoolVar(&c.allowUnresolved, "allow-unresolved", false, "Edge mode: accept DO ids that list-dos cannot name (with a warning)")
	f.StringVar(&c.cloudflareURL, "cloudflare-api-url", "", "Cloudflare API base URL (tests, proxies)")
	_ = f.MarkHidden("cloudflare-api-url")
	c.r2.register(f)
}

// deployment is a connected EdgeBase target.
type deployment struct {
	client *edgebase.Client
	enum   *discovery.Enumerator
	edge   bool
	hc     *http.Client
	cf     *cloudflare.Client // Edge mode only
	// r2 is R2 direct for storage, nil for the admin API.
	r2 edgevault.StorageDirect
}

// close drops the idle connections of the command's HTTP client. Run is
// also called in-process (tests, demo tooling); without this a connection
// the transport dialed speculatively and never used outlives the command
// and holds up the server's graceful shutdown.
func (d *deployment) close() { d.hc.CloseIdleConnections() }

func (a *app) connect(c *connFlags, concurrency int) (*deployment, error) {
	url := a.flagOrEnv(c.url, "EDGEBASE_URL")
	if url == "" {
		return nil, &cmdError{status: "needs_input", code: "worker_url_required", field: "url",
			msg: "no EdgeBase URL: pass --url or set EDGEBASE_URL", exit: ExitNeedsInput}
	}
	key := a.flagOrEnv(c.serviceKey, "EDGEBASE_SERVICE_KEY")
	if key == "" {
		key = a.serviceKeyFromSecretsFile()
	}
	if key == "" {
		return nil, &cmdError{status: "needs_input", code: "service_key_required", field: "service-key",
			msg: "no service key: pass --service-key, set EDGEBASE_SERVICE_KEY, or put SERVICE_KEY in .edgebase/secrets.json", exit: ExitNeedsInput}
	}
	hc := &http.Client{Transport: newLimitedTransport(edgebase.DefaultTransport(), 2*max(concurrency, 1))}
	opts := edgebase.Options{BaseURL: url, ServiceKey: sensitive.String(key), HTTPClient: hc, Logger: a.log}
	if a.env.retry != nil {
		opts.Retry = *a.env.retry
	}
	client, err := edgebase.New(opts)
	if err != nil {
		return nil, failure("invalid_arguments", err)
	}
	d := &deployment{client: client, hc: hc}
	if d.r2, err = a.r2Storage(&c.r2); err != nil {
		return nil, err
	}
	d.enum = &discovery.Enumerator{Client: client, StateDir: c.stateDir, SkipInstances: c.skipInstances, AllowUnresolved: c.allowUnresolved}
	insts, err := expandList(c.instances)
	if err != nil {
		return nil, failure("invalid_arguments", err)
	}
	d.enum.Instances = insts
	account := a.flagOrEnv(c.accountID, "CLOUDFLARE_ACCOUNT_ID")
	token := a.flagOrEnv(c.apiToken, "CLOUDFLARE_API_TOKEN")
	if account != "" && token != "" {
		cf, err := cloudflare.New(cloudflare.Options{BaseURL: c.cloudflareURL, AccountID: account, Token: sensitive.String(token), Logger: a.log})
		if err != nil {
			return nil, failure("invalid_arguments", err)
		}
		d.enum.Edge = discovery.CloudflareEdge(cf, c.script)
		d.edge, d.cf = true, cf
	} else if (account == "") != (token == "") {
		return nil, failure("invalid_arguments", errors.New("Edge mode needs both --account-id and --api-token (or CLOUDFLARE_ACCOUNT_ID and CLOUDFLARE_API_TOKEN)"))
	}
	return d, nil
}

func (a *app) serviceKeyFromSecretsFile() string {
	b, err := os.ReadFile(filepath.Join(a.env.WorkDir, ".edgebase", "secrets.json"))
	if err != nil {
		return ""
	}
	var m map[string]any
	if json.Unmarshal(b, &m) != nil {
		return ""
	}
	s, _ := m["SERVICE_KEY"].(string)
	return s
}

// expandList turns "a,b" and "@file" items into names.
func expandList(items []string) ([]string, error) {
	var out []string
	for _, it := range items {
		if file, ok := strings.CutPrefix(it, "@"); ok {
			b, err := os.ReadFile(file)
			if err != nil {
				return nil, err
			}
			for _, line := range strings.Split(string(b), "\n") {
				if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
					out = append(out, line)
				}
			}
			continue
		}
		if it = strings.TrimSpace(it); it != "" {
			out = append(out, it)
		}
	}
	return out, nil
}

// embedded is the pipeline wired to an in-process queue and a directory.
type embedded struct {
	store  pipeline.BlobStore
	close  func() error
	engine *pipeline.Engine
	jobs   *pipeline.Jobs
	queue  *mem.Queue
	runner *pipeline.Runner
}

// embedOptions are what a command adds to the embedded wiring.
type embedOptions struct {
	concurrency int
	// scratch makes every write non-durable (a restore's work directory,
	// deleted at the end).
	scratch bool
	deps    edgevault.Deps
	// signer, when set, chains and signs each backup's manifest.
	signer provenance.Signer
}

// embed wires the pipeline over dir (edgevault.New, the composition root
// every runtime uses). Writes under the staging prefix are not fsynced:
// staging is recreated or resumed after a crash anyway, and thousands of
// small syncs would dominate a local run. The archive and its manifest
// are always durable. A scratch run keeps its small records in memory
// (pkg/blob/spill): creating a file each costs more than they do.
func (a *app) embed(dir string, o embedOptions) (*embedded, error) {
	store, err := fs.NewWithOptions(dir, fs.Options{NoSync: func(key string) bool {
		return o.scratch || strings.HasPrefix(key, StagingPrefix)
	}})
	if err != nil {
		return nil, err
	}
	if !o.scratch {
		return a.embedStore(store, store.Close, o)
	}
	scratch, err := spill.New(context.Background(), store, spill.Options{})
	if err != nil {
		store.Close()
		return nil, err
	}
	return a.embedStore(scratch, store.Close, o)
}

// embedStore wires the pipeline over any blob store: a directory, or an
// s3:// prefix (where staging lives in the bucket, as for the Lambdas).
func (a *app) embedStore(store pipeline.BlobStore, closeStore func() error, o embedOptions) (*embedded, error) {
	q := mem.New(mem.Options{VisibilityTimeout: 6 * time.Hour})
	d := o.deps
	d.Store, d.Staging, d.Archives, d.Tasks, d.Control, d.Log = store, StagingPrefix, "", q, nil, a.log
	if o.signer != nil {
		d.Backup.Sealer = &provenance.Sealer{Store: store, Archives: d.Archives, Signer: o.signer}
	}
	if d.Engine.MaxAttempts == 0 {
		d.Engine.MaxAttempts = 3
	}
	if d.Engine.Backoff.Base == 0 {
		d.Engine.Backoff = pipeline.Backoff{Base: 200 * time.Millisecond, Limit: 15 * time.Second}
	}
	engine, err := edgevault.New(d)
	if err != nil {
		closeStore()
		return nil, err
	}
	return &embedded{store: store, close: closeStore, engine: engine, jobs: engine.Jobs(), queue: q,
		runner: &pipeline.Runner{Engine: engine, Queue: q, Depth: q.Len, Concurrency: max(o.concurrency, 1), Log: a.log}}, nil
}

func (e *embedded) Close() error { return e.close() }

// run drives a started job with a progress display.
func (a *app) run(ctx context.Context, e *embedded, job *events.Job, label string) (*events.Job, error) {
	p := a.newProgress(label)
	p.SetTotal(int64(job.Tasks))
	for ph := range job.PhaseTasks {
		if n, err := e.jobs.CountDone(ctx, job.ID, ph); err == nil {
			for range n {
				p.Done(false)
			}
		}
	}
	e.engine.Worker.OnFinish = func(_ events.Task, st events.TaskStatus) {
		if st.State != events.TaskRetrying {
			p.Done(st.State == events.TaskFailed)
		}
	}
	ctx = pipeline.WithMeter(ctx, p.AddBytes)
	final, err := e.runner.Run(ctx, job.ID)
	p.Close()
	return final, err
}

// limitedTransport bounds requests in flight (headers to body close)
// across every task, so task and in-task fan-out never multiply.
type limitedTransport struct {
	base http.RoundTripper
	sem  chan struct{}
}

func newLimitedTransport(base http.RoundTripper, n int) *limitedTransport {
	return &limitedTransport{base: base, sem: make(chan struct{}, n)}
}

func (t *limitedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	select {
	case t.sem <- struct{}{}:
	case <-req.Context().Done():
		return nil, req.Context().Err()
	}
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		<-t.sem
		return nil, err
	}
	resp.Body = &releaseBody{ReadCloser: resp.Body, release: func() { <-t.sem }}
	return resp, nil
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach the
// wrapped transport.
func (t *limitedTransport) CloseIdleConnections() {
	if c, ok := t.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

type releaseBody struct {
	io.ReadCloser
	once    sync.Once
	release func()
}

func (b *releaseBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(b.release)
	return err
}

func fmtDuration(d time.Duration) string {
	if d < time.Second {
		return d.Round(time.Millisecond).String()
	}
	return d.Round(100 * time.Millisecond).String()
}
