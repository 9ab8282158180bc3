package backup

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/pkg/discovery"
	"github.com/edgevault/edgevault/pkg/edgebase"
	"github.com/edgevault/edgevault/pkg/pipeline"
)

// Default page-range limits of storage tasks.
const (
	DefaultRangeKeys  = 1000
	DefaultRangeBytes = 256 << 20
)

// Planner plans a backup job: one task per unit, in the order the
// assembler writes them (control D1, auth D1, each DB DO by name, config,
// each data namespace by name, secrets, each storage page range), all in
// one phase.
type Planner struct {
	Jobs   *pipeline.Jobs
	Client *edgebase.Client
	Enum   *discovery.Enumerator
	// RangeKeys and RangeBytes close a storage page range at whichever
	// limit is reached first.
	RangeKeys  int
	RangeBytes int64
	// Direct, when set, lists storage through R2 direct instead of the
	// admin API (see DirectStorage).
	Direct DirectStorage
	// Repo, when set, makes every job a repository backup: it ends in a
	// snapshot of this repository, and storage objects unchanged since
	// the parent snapshot are not read again.
	Repo RepositoryOpener
	Log  *slog.Logger
}

var _ pipeline.Planner = (*Planner)(nil)

// Plan implements pipeline.Planner.
func (p *Planner) Plan(ctx context.Context, job *events.Job) error {
	// A refused request (a wrong key, a redirect to another origin) fails
	// the job at once; the store's and the network's failures are retried.
	return classify(p.plan(ctx, job))
}

func (p *Planner) plan(ctx context.Context, job *events.Job) error {
	// A failed GET /config is fatal: without it, D1/Postgres namespaces
	// would silently be left out (the official CLI ignores the failure).
	cfg, _, err := p.Client.Config(ctx)
	if err != nil {
		return fmt.Errorf("reading the server config: %w", err)
	}
	dos, warnings, err := p.Enum.DOs(ctx, cfg)
	if err != nil {
		return err
	}
	var namespaces []string
	for _, b := range cfg.Databases {
		if b.DataNamespace() {
			namespaces = append(namespaces, b.Name)
		}
	}
	sort.Strings(namespaces)
	var rp *repoPlan
	if p.Repo != nil {
		if rp, err = p.openRepoPlan(ctx, job); err != nil {
			return err
		}
		defer rp.close()
	}

	seq := 0
	n, err := p.Jobs.WritePlan(ctx, job.ID, func(emit func(events.Task) error) error {
		next := func(t events.Task) error {
			seq++
			t.ID = pipeline.TaskID(seq, t.Kind)
			return emit(t)
		}
		if err := next(events.Task{Kind: events.TaskControlD1, Unit: "control D1"}); err != nil {
			return err
		}
		if err := next(events.Task{Kind: events.TaskAuthD1, Unit: "auth D1"}); err != nil {
			return err
		}
		for _, name := range dos {
			if err := next(events.Task{Kind: events.TaskDO, Unit: "DO " + name, DOName: name, DOType: edgebase.TypeDatabase}); err != nil {
				return err
			}
		}
		if err := next(events.Task{Kind: events.TaskConfig, Unit: "config"}); err != nil {
			return err
		}
		for _, ns := range namespaces {
			if err := next(events.Task{Kind: events.TaskData, Unit: "namespace " + ns, Namespace: ns}); err != nil {
				return err
			}
		}
		if job.Options.IncludeSecrets {
			if err := next(events.Task{Kind: events.TaskSecrets, Unit: "secrets"}); err != nil {
				return err
			}
		}
		if job.Options.IncludeStorage {
			return p.planStorage(ctx, job, rp, next)
		}
		return nil
	})
	if err != nil {
		return err
	}
	job.Tasks = n
	job.AddWarnings(warnings...)
	job.AddWarnings(routingWarnings(cfg)...)
	job.Summary = &events.Summary{DOs: len(dos), Namespaces: len(namespaces)}
	return nil
}

// RangeKey is the planning file listing the objects of storage range r.
func RangeKey(j *pipeline.Jobs, job string, r int) string {
	return j.PlanKey(job, fmt.Sprintf("storage-%06d.ndjson", r))
}

// planStorage streams the bucket listing into page-range files, never
// holding more than one range in memory. Server-internal keys (upload-grant
// markers) are never backed up: they are counted and left out.
func (p *Planner) planStorage(ctx context.Context, job *events.Job, rp *repoPlan, next func(events.Task) error) error {
	maxKeys, maxBytes := p.RangeKeys, p.RangeBytes
	if maxKeys <= 0 {
		maxKeys = DefaultRangeKeys
	}
	if maxBytes <= 0 {
		maxBytes = DefaultRangeBytes
	}
	if p.Direct != nil {
		internal, err := p.planDirect(ctx, job, maxKeys, maxBytes, rp, next)
		if err != nil {
			return err
		}
		return p.observe(ctx, job, internal)
	}
	var (
		cur      []rangeObject
		bytes    int64
		r        int
		internal int64
	)
	flush := func() error {
		if len(cur) == 0 {
			return nil
		}
		if err := writeNDJSON(ctx, p.Jobs, RangeKey(p.Jobs, job.ID, r), cur); err != nil {
			return err
		}
		first, last := cur[0].Key, cur[len(cur)-1].Key
		err := next(events.Task{Kind: events.TaskStorage, Range: r, First: true,
			Unit: fmt.Sprintf("storage range %d (%d objects, %q … %q)", r, len(cur), first, last)})
		r++
		cur, bytes = cur[:0], 0
		return err
	}
	_, err := p.Client.ListStorage(ctx, func(o edgebase.Object) error {
		if edgebase.IsInternalKey(o.Key) {
			internal++
			return nil
		}
		cur = append(cur, rangeObject{Object: o, Reuse: rp.lookup(o)})
		bytes += o.Size
		if len(cur) >= maxKeys || bytes >= maxBytes {
			return flush()
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("listing storage: %w", err)
	}
	if err := flush(); err != nil {
		return err
	}
	return p.observe(ctx, job, internal)
}

// observe records what the listing showed of the server.
func (p *Planner) observe(ctx context.Context, job *events.Job, internal int64) error {
	if internal > 0 {
		job.AddWarnings(internalKeysNotice(internal))
	}
	return p.Jobs.PutJSON(ctx, p.Jobs.PlanKey(job.ID, ObservationsName), PlanObservations{InternalKeysSkipped: internal})
}

func writeNDJSON[T any](ctx context.Context, j *pipeline.Jobs, key string, items []T) error {
	return j.PutStream(ctx, key, func(w io.Writer) error {
		enc := json.NewEncoder(w)
		for _, it := range items {
			if err := enc.Encode(it); err != nil {
				return err
			}
		}
		return nil
	})
}

// readRange loads the objects of one storage page range.
func readRange(ctx context.Context, j *pipeline.Jobs, job string, r int) ([]edgebase.Object, error) {
	var out []edgebase.Object
	err := eachRangeObject(ctx, j, job, r, func(o rangeObject) error {
		out = append(out, o.Object)
		return nil
	})
	return out, err
}

// eachRangeObject streams the planning file of storage page range r.
func eachRangeObject(ctx context.Context, j *pipeline.Jobs, job string, r int, fn func(rangeObject) error) error {
	rc, err := j.Store.Get(ctx, RangeKey(j, job, r))
	if err != nil {
		return err
	}
	defer rc.Close()
	dec := json.NewDecoder(bufio.NewReader(rc))
	for {
		var o rangeObject
		if err := dec.Decode(&o); err == io.EOF {
			return nil
		} else if err != nil {
			return fmt.Errorf("storage range %d: %w", r, err)
		}
		if err := fn(o); err != nil {
			return err
		}
	}
}

// SourceFor derives the archive's "source" the way the official CLI does.
func SourceFor(baseURL string, edge bool) string {
	switch {
	case edge || strings.Contains(baseURL, "workers.dev"):
		return "cloudflare-edge"
	case strings.Contains(baseURL, "localhost"):
		return "local"
	}
	return "docker"
}
