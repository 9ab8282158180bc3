package restore

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/pkg/archive"
	"github.com/edgevault/edgevault/pkg/edgebase"
	"github.com/edgevault/edgevault/pkg/pipeline"
	"github.com/edgevault/edgevault/pkg/secrets"
)

// Concurrency bounds parallel requests per step inside one process. The
// defaults are the official CLI's.
type Concurrency struct {
	DOs        int // restore-do (10)
	Namespaces int // restore-data (4)
	Objects    int // storage puts (5)
	Wipes      int // orphan wipe-do (1: sequential like the official CLI)
}

func (c Concurrency) withDefaults() Concurrency {
	if c.DOs <= 0 {
		c.DOs = 10
	}
	if c.Namespaces <= 0 {
		c.Namespaces = 4
	}
	if c.Objects <= 0 {
		c.Objects = 5
	}
	if c.Wipes <= 0 {
		c.Wipes = 1
	}
	return c
}

// Tasks runs the restore task kinds against the target.
type Tasks struct {
	Jobs    *pipeline.Jobs
	Client  *edgebase.Client
	Secrets secrets.Store // where restored secrets go; nil: skipped with a warning
	// Direct, when set, writes storage through R2 direct (DirectStorage)
	// instead of the admin API.
	Direct DirectStorage
	// ChunkBytes splits D1 restores larger than this into a wipe call and
	// per-table calls with skipWipe (spec 2.8); 0 = 8 MiB.
	ChunkBytes  int64
	Concurrency Concurrency
	// DORetry is the retry policy of restore-do. A DO just woken from cold
	// can refuse restores with a 500 for seconds to minutes on the server
	// (its gate's cursor keeps a table locked), and every restore-do of the
	// same payload converges, so it gets a long budget (default ~5 min).
	DORetry edgebase.RetryPolicy

	once sync.Once
	sems map[events.TaskKind]chan struct{}

	mu           sync.Mutex
	unchangedJob string
	unchanged    map[string]bool
	configJob    string
	config       *edgebase.Config
}

// Handlers returns the handler per restore task kind.
func (t *Tasks) Handlers() map[events.TaskKind]pipeline.Handler {
	return map[events.TaskKind]pipeline.Handler{
		events.TaskPrime:            t.prime,
		events.TaskRestoreControlD1: t.unlessUnchanged(t.restoreControl),
		events.TaskRestoreAuthD1:    t.unlessUnchanged(t.restoreAuth),
		events.TaskWipeDO:           t.wipeOrphans,
		events.TaskRestoreDO:        t.limited(events.TaskRestoreDO, t.unlessUnchanged(t.restoreDO)),
		events.TaskRestoreData:      t.limited(events.TaskRestoreData, t.unlessUnchanged(t.restoreData)),
		events.TaskWipeStorage:      t.wipeStorage,
		events.TaskPutStorage:       t.putStorage,
		events.TaskResync:           t.unlessUnchanged(t.resync),
		events.TaskRestoreSecrets:   t.restoreSecrets,
	}
}

// sem returns the process-wide semaphore of one task kind. Tasks of a
// kind run in parallel (one per queue worker), so a limit inside one task
// alone would be multiplied by the number of workers.
func (t *Tasks) sem(kind events.TaskKind) chan struct{} {
	t.once.Do(func() {
		c := t.Concurrency.withDefaults()
		t.sems = map[events.TaskKind]chan struct{}{
			events.TaskRestoreDO:   make(chan struct{}, c.DOs),
			events.TaskRestoreData: make(chan struct{}, c.Namespaces),
			events.TaskPutStorage:  make(chan struct{}, c.Objects),
		}
	})
	return t.sems[kind]
}

// acquire takes a slot of sem, or gives up when ctx ends.
func acquire(ctx context.Context, sem chan struct{}) (release func(), err error) {
	select {
	case sem <- struct{}{}:
		return func() { <-sem }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// limited bounds how many tasks of one kind run at once in this process.
func (t *Tasks) limited(kind events.TaskKind, h pipeline.Handler) pipeline.Handler {
	return func(ctx context.Context, u pipeline.Unit) (pipeline.Result, error) {
		release, err := acquire(ctx, t.sem(kind))
		if err != nil {
			return pipeline.Result{}, err
		}
		defer release()
		return h(ctx, u)
	}
}

// prime reads every table of the target's D1 data namespaces once: a
// never-used local target creates them on first touch, and otherwise the
// restored _meta rows would make it skip their creation (Appendix A.2).
// A DB block whose definition the target's config snapshot withholds
// (redacted) has unknown tables: the archive's control _meta names the
// tables the source had created (schemaHash:<table>), so those that no
// known block has are tried in each such block, a miss answering 404.
func (t *Tasks) prime(ctx context.Context, u pipeline.Unit) (pipeline.Result, error) {
	cfg, err := t.targetConfig(ctx, u.Job.ID)
	if err != nil {
		return pipeline.Result{}, err
	}
	var res pipeline.Result
	known := map[string]bool{}
	var withheld []string
	for _, b := range cfg.Databases {
		for _, tbl := range b.Tables {
			known[tbl.Name] = true
		}
		if b.Unknown {
			withheld = append(withheld, b.Name)
		}
		if !b.DataNamespace() || b.Postgres() {
			continue
		}
		for _, tbl := range b.Tables {
			if err := t.Client.TouchTable(ctx, b.Name, "", tbl.Name); err != nil {
				res.Warnings = append(res.Warnings, fmt.Sprintf("touching %s/%s: %v", b.Name, tbl.Name, err))
			}
		}
	}
	if len(withheld) == 0 || u.Task.Input == "" {
		return res, nil
	}
	tables, err := t.metaTables(ctx, u.Task.Input)
	if err != nil {
		return res, err
	}
	for _, blk := range withheld {
		for _, tbl := range tables {
			if known[tbl] {
				continue
			}
			err := t.Client.TouchTable(ctx, blk, "", tbl)
			if err != nil && !errors.Is(err, edgebase.ErrNotFound) && !errors.Is(err, edgebase.ErrBadRequest) {
				res.Warnings = append(res.Warnings, fmt.Sprintf("touching %s/%s: %v", blk, tbl, err))
			}
		}
	}
	return res, nil
}

// metaTables lists the tables a staged control D1 part names in its _meta
// rows (schemaHash:<table>), sorted.
func (t *Tasks) metaTables(ctx context.Context, key string) ([]string, error) {
	var tables struct {
		Meta []struct {
			Key string `json:"key"`
		} `json:"_meta"`
	}
	if err := t.Jobs.GetJSON(ctx, key, &tables); err != nil {
		return nil, err
	}
	var out []string
	for _, r := range tables.Meta {
		if tbl, ok := strings.CutPrefix(r.Key, "schemaHash:"); ok && tbl != "" && !slices.Contains(out, tbl) {
			out = append(out, tbl)
		}
	}
	slices.Sort(out)
	return out, nil
}

func (t *Tasks) restoreControl(ctx context.Context, u pipeline.Unit) (pipeline.Result, error) {
	task := u.Task
	return t.restoreD1Like(ctx, task, func(body edgebase.BodyFunc, skipWipe bool) (edgebase.RestoreResult, error) {
		return t.Client.RestoreControlD1(ctx, body, skipWipe)
	}, true, false)
}

func (t *Tasks) restoreAuth(ctx context.Context, u pipeline.Unit) (pipeline.Result, error) {
	task := u.Task
	return t.restoreD1Like(ctx, task, func(body edgebase.BodyFunc, skipWipe bool) (edgebase.RestoreResult, error) {
		return t.Client.RestoreD1(ctx, body, skipWipe)
	}, true, false)
}

func (t *Tasks) restoreData(ctx context.Context, u pipeline.Unit) (pipeline.Result, error) {
	task := u.Task
	cfg, err := t.targetConfig(ctx, u.Job.ID)
	if err != nil {
		return pipeline.Result{}, err
	}
	blk, _ := cfg.Block(task.Namespace)
	// Postgres inserts are plain INSERTs without a transaction: a repeated
	// chunk is a duplicate-key error, so never chunk them (spec 5.5).
	return t.restoreD1Like(ctx, task, func(body edgebase.BodyFunc, skipWipe bool) (edgebase.RestoreResult, error) {
		return t.Client.RestoreData(ctx, task.Namespace, body, skipWipe)
	}, !blk.Postgres(), true)
}

// restoreD1Like sends a staged tables object to a restore endpoint that
// wipes first. Small inputs go in one call. Larger ones, where allowed,
// go as one wiping call with no tables followed by calls with skipWipe per
// chunk of rows, which converges to the same state (spec 2.8) and keeps
// every request under the platform's body limits. The whole unit is
// repeated on any failure. dump says the part is a whole dump (a data
// namespace) rather than a bare tables object.
func (t *Tasks) restoreD1Like(ctx context.Context, task events.Task, send func(edgebase.BodyFunc, bool) (edgebase.RestoreResult, error), canChunk, dump bool) (pipeline.Result, error) {
	info, err := t.Jobs.Store.Stat(ctx, task.Input)
	if err != nil {
		return pipeline.Result{}, err
	}
	res := pipeline.Result{Bytes: info.Size}
	limit := t.ChunkBytes
	if limit <= 0 {
		limit = 8 << 20
	}
	if !canChunk || info.Size <= limit {
		var rows rowCount
		_, err := send(t.tablesBody(ctx, task.Input, nil, dump, &rows), false)
		res.Rows = rows.get()
		return res, classify(err)
	}
	if _, err := send(edgebase.BytesBody([]byte("{}")), false); err != nil {
		return res, classify(err)
	}
	var discard rowCount
	rc, err := t.tablesBody(ctx, task.Input, nil, dump, &discard)()
	if err != nil {
		return res, err
	}
	defer rc.Close()
	err = chunkTables(rc, int(limit), func(body []byte, rows int64) error {
		res.Rows += rows
		_, err := send(edgebase.BytesBody(body), true)
		return err
	})
	return res, classify(err)
}

// rowCount is the row count of the last body a request sent. A retried
// request calls its body function again while the copy feeding the
// abandoned body may still be running; only the newest copy's count
// stands.
type rowCount struct {
	mu   sync.Mutex
	gen  int
	rows int64
}

func (c *rowCount) next() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	return c.gen
}

func (c *rowCount) set(gen int, rows int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen == c.gen {
		c.rows = rows
	}
}

func (c *rowCount) get() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rows
}

// tablesBody streams the tables object of a staged part (a bare tables
// object, or a dump holding one when dump is set) into a request body,
// dropping {} rows (spec 8.16) and the tables in skip.
func (t *Tasks) tablesBody(ctx context.Context, key string, skip []string, dump bool, rows *rowCount) edgebase.BodyFunc {
	return func() (io.ReadCloser, error) {
		rc, err := t.Jobs.Store.Get(ctx, key)
		if err != nil {
			return nil, err
		}
		gen := rows.next()
		pr, pw := io.Pipe()
		go func() {
			defer rc.Close()
			keep := func(name string) bool { return !slices.Contains(skip, name) }
			copyFn := archive.CopyTables
			if dump {
				copyFn = archive.CopyDumpTables
			}
			stats, err := copyFn(pw, bufio.NewReaderSize(rc, 256<<10), keep, true)
			var n int64
			for _, s := range stats {
				n += s.Rows
			}
			rows.set(gen, n)
			pw.CloseWithError(err)
		}()
		return pr, nil
	}
}

// wipeOrphans wipes every target DO the archive does not have. All wipes
// are attempted before a failure is reported (spec 9.43).
func (t *Tasks) wipeOrphans(ctx context.Context, u pipeline.Unit) (pipeline.Result, error) {
	task := u.Task
	var names []string
	if err := t.Jobs.GetJSON(ctx, task.Input, &names); err != nil {
		return pipeline.Result{}, err
	}
	var (
		mu     sync.Mutex
		failed []string
	)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(t.Concurrency.withDefaults().Wipes)
	for _, n := range names {
		g.Go(func() error {
			if err := t.Client.WipeDO(gctx, n, edgebase.TypeDatabase); err != nil {
				if gctx.Err() != nil {
					return gctx.Err()
				}
				mu.Lock()
				failed = append(failed, fmt.Sprintf("%s: %v", n, err))
				mu.Unlock()
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return pipeline.Result{}, err
	}
	if len(failed) > 0 {
		return pipeline.Result{}, fmt.Errorf("%d of %d orphan wipes failed: %s", len(failed), len(names), strings.Join(failed, "; "))
	}
	// Objects of a restore count uploaded storage objects only; the
	// orphans are listed in the plan's report.
	return pipeline.Result{}, nil
}

// restoreDO replaces one DO. An instance the target has never seen answers
// needsCreate and would silently restore nothing: create it with a first
// read through the public API, then restore again.
func (t *Tasks) restoreDO(ctx context.Context, u pipeline.Unit) (pipeline.Result, error) {
	task := u.Task
	info, err := t.Jobs.Store.Stat(ctx, task.Input)
	if err != nil {
		return pipeline.Result{}, err
	}
	res := pipeline.Result{Bytes: info.Size}
	var rows rowCount
	body := t.tablesBody(ctx, task.Input, task.SkipTables, true, &rows)
	policy := t.DORetry
	if policy.MaxAttempts == 0 {
		policy = edgebase.RetryPolicy{MaxAttempts: 40, BaseDelay: 500 * time.Millisecond, MaxDelay: 10 * time.Second}
	}
	client := t.Client.WithRetry(policy)
	if task.Create {
		if err := t.createInstance(ctx, u.Job.ID, task.DOName); err != nil {
			return res, pipeline.Permanent(fmt.Errorf("DO %s does not exist on the target and could not be created: %w", task.DOName, err))
		}
	}
	_, err = client.RestoreDO(ctx, task.DOName, task.DOType, body)
	if errors.Is(err, edgebase.ErrNeedsCreate) {
		if cerr := t.createInstance(ctx, u.Job.ID, task.DOName); cerr != nil {
			return res, pipeline.Permanent(fmt.Errorf("DO %s does not exist on the target and could not be created: %w", task.DOName, cerr))
		}
		_, err = client.RestoreDO(ctx, task.DOName, task.DOType, body)
	}
	res.Rows = rows.get()
	if errors.Is(err, edgebase.ErrServer) {
		// The long retry budget above is the retry for server errors;
		// another round per queue delivery would only multiply it.
		return res, pipeline.Permanent(err)
	}
	return res, classify(err)
}

func (t *Tasks) createInstance(ctx context.Context, job, name string) error {
	ns, id, ok := strings.Cut(name, ":")
	if !ok || id == "" {
		return fmt.Errorf("%q is not an instance name (namespace:id)", name)
	}
	cfg, err := t.targetConfig(ctx, job)
	if err != nil {
		return err
	}
	blk, ok := cfg.Block(ns)
	if !ok || len(blk.Tables) == 0 {
		return fmt.Errorf("the target has no DB block %q with tables", ns)
	}
	return t.Client.TouchTable(ctx, ns, id, blk.Tables[0].Name)
}

// putStorage uploads one spool or one range of objects from staging,
// each object with the content type the archive recorded.
func (t *Tasks) putStorage(ctx context.Context, u pipeline.Unit) (pipeline.Result, error) {
	job, task := u.Job, u.Task
	sel, err := ParseOnly(job.Options.Only)
	if err != nil {
		return pipeline.Result{}, pipeline.Permanent(err)
	}
	type upload struct {
		key, contentType string
		size             int64
		open             func(context.Context) (io.ReadCloser, error)
	}
	sp, err := t.readStoragePlan(ctx, task.Job)
	if err != nil {
		return pipeline.Result{}, err
	}
	var (
		ups  []upload
		skip skipSet
	)
	if strings.HasSuffix(task.Input, ".json") {
		var idx spoolIndex
		if err := t.Jobs.GetJSON(ctx, task.Input, &idx); err != nil {
			return pipeline.Result{}, err
		}
		if n := int64(len(idx.Entries)); n > 0 && sp.RangeKeys > 0 {
			rk := int64(sp.RangeKeys)
			if skip, err = t.skips(ctx, task.Job, sp, int(idx.First/rk), int((idx.First+n-1)/rk)); err != nil {
				return pipeline.Result{}, err
			}
		}
		for _, e := range idx.Entries {
			ups = append(ups, upload{e.Key, e.ContentType, e.Size, func(ctx context.Context) (io.ReadCloser, error) {
				return t.Jobs.Store.GetRange(ctx, idx.Blob, e.Offset, e.Size)
			}})
		}
	} else {
		objs, err := readObjects(ctx, t.Jobs, task.Input)
		if err != nil {
			return pipeline.Result{}, err
		}
		if skip, err = t.skips(ctx, task.Job, sp, task.Range, task.Range); err != nil {
			return pipeline.Result{}, err
		}
		for _, o := range objs[min(int(task.Skip), len(objs)):] {
			blobKey := ObjectKey(t.Jobs, task.Job, o.Key)
			ups = append(ups, upload{o.Key, o.ContentType, o.Size, func(ctx context.Context) (io.ReadCloser, error) {
				return t.Jobs.Store.Get(ctx, blobKey)
			}})
		}
	}
	var (
		mu  sync.Mutex
		res pipeline.Result
	)
	// The limit on puts is shared by every storage task running at once.
	sem := t.sem(events.TaskPutStorage)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(t.Concurrency.withDefaults().Objects)
	for _, u := range ups {
		if _, unchanged := skip[u.key]; unchanged || !sel.Object(u.key) {
			continue
		}
		g.Go(func() error {
			release, err := acquire(gctx, sem)
			if err != nil {
				return err
			}
			defer release()
			body := func() (io.ReadCloser, error) {
				rc, err := u.open(gctx)
				if err != nil {
					return nil, err
				}
				return struct {
					io.Reader
					io.Closer
				}{pipeline.MeteredReader(gctx, rc), rc}, nil
			}
			if err := t.target().PutObject(gctx, u.key, u.contentType, u.size, body); err != nil {
				return fmt.Errorf("object %q: %w", u.key, err)
			}
			mu.Lock()
			res.Objects++
			res.Bytes += u.size
			mu.Unlock()
			return nil
		})
	}
	return res, classify(g.Wait())
}

// readObjects loads a staged range of storage.objects entries.
func readObjects(ctx context.Context, jobs *pipeline.Jobs, key string) ([]archive.Object, error) {
	rc, err := jobs.Store.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	var out []archive.Object
	dec := json.NewDecoder(bufio.NewReader(rc))
	for {
		var o archive.Object
		if err := dec.Decode(&o); err == io.EOF {
			return out, nil
		} else if err != nil {
			return nil, err
		}
		out = append(out, o)
	}
}

func (t *Tasks) resync(ctx context.Context, _ pipeline.Unit) (pipeline.Result, error) {
	// Success is judged by ok/totalSynced, not by the shards field the
	// server never sends (spec 8.10).
	n, err := t.Client.ResyncUsersPublic(ctx)
	if err != nil {
		return pipeline.Result{}, pipeline.AsWarning(fmt.Errorf("_users_public resync failed: %w", err))
	}
	return pipeline.Result{Rows: n}, nil
}

func (t *Tasks) restoreSecrets(ctx context.Context, u pipeline.Unit) (pipeline.Result, error) {
	task := u.Task
	var vals map[string]string
	if err := t.Jobs.GetJSON(ctx, task.Input, &vals); err != nil {
		return pipeline.Result{}, err
	}
	if t.Secrets == nil {
		return pipeline.Result{}, pipeline.AsWarning(errors.New("the archive holds secrets but no secret store is configured; not restored"))
	}
	if err := t.Secrets.Save(ctx, vals); err != nil {
		return pipeline.Result{}, pipeline.AsWarning(fmt.Errorf("writing secrets: %w", err))
	}
	return pipeline.Result{}, nil
}

// classify marks replies that retrying cannot change as permanent.
func classify(err error) error {
	switch {
	case err == nil:
		return nil
	case edgebase.IsTransport(err):
		return err
	case errors.Is(err, edgebase.ErrUnauthorized), errors.Is(err, edgebase.ErrForbidden),
		errors.Is(err, edgebase.ErrBadRequest), errors.Is(err, edgebase.ErrNotFound),
		errors.Is(err, edgebase.ErrNotOK), errors.Is(err, edgebase.ErrNeedsCreate), errors.Is(err, edgebase.ErrRedirect),
		errors.Is(err, archive.ErrInvalid):
		return pipeline.Permanent(err)
	}
	return err
}
