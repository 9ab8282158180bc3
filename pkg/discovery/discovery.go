package discovery

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/edgevault/edgevault/internal/miniflare"
	"github.com/edgevault/edgevault/pkg/edgebase"
	"github.com/edgevault/edgevault/pkg/pipeline"
)

// EdgeLister lists the hex ids of every DatabaseDO holding data, through
// the Cloudflare API (Edge mode). It returns how many ids it reported.
type EdgeLister interface {
	DatabaseDOIDs(ctx context.Context, fn func(hexID string) error) (int, error)
}

// Enumerator finds the DB Durable Objects to back up (or, for a restore
// target, the ones that may need an orphan wipe). Sources, combined:
//   - the server's list-dos config scan (static blocks; always used);
//   - Edge mode: every DatabaseDO with stored data from the Cloudflare API,
//     resolved to names with list-dos {hexIds} in chunks;
//   - a local dev server's Miniflare state directory (StateDir);
//   - explicit instance names (Instances).
//
// A dynamic block (instance: true) whose instances no source can list is
// an error unless SkipInstances is set: a backup that silently leaves out
// tenants' databases must not look complete.
type Enumerator struct {
	Client        *edgebase.Client
	Edge          EdgeLister
	StateDir      string
	Instances     []string
	SkipInstances bool
	// AllowUnresolved accepts Edge ids list-dos cannot name (cold DOs, see
	// the protocol's Edge caveat) with a warning instead of failing.
	AllowUnresolved bool
	// ResolveChunk is how many hex ids go into one list-dos call.
	ResolveChunk int
	// FindPackagedState looks for a packaged app's state directory by app
	// name when no instance source was given (default
	// miniflare.FindPackagedState); it only improves the error message.
	FindPackagedState func(app string) (string, error)
}

// Sources describes the enumeration sources in use, for messages.
func (e *Enumerator) Sources() string {
	s := []string{"list-dos config scan"}
	if e.Edge != nil {
		s = append(s, "Cloudflare API (Edge mode)")
	}
	if e.StateDir != "" {
		s = append(s, "local state "+e.StateDir)
	}
	if len(e.Instances) > 0 {
		s = append(s, fmt.Sprintf("%d listed instances", len(e.Instances)))
	}
	return strings.Join(s, ", ")
}

// DOs returns the DB DOs to consider, sorted by name, with warnings about
// what was left out and why.
func (e *Enumerator) DOs(ctx context.Context, cfg *edgebase.Config) ([]string, []string, error) {
	var warnings []string
	names := map[string]bool{}
	add := func(name string) {
		if name != "" {
			names[name] = true
		}
	}
	listed, err := e.Client.ListDOs(ctx, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("enumerating DOs (list-dos): %w", err)
	}
	for _, d := range listed {
		if d.Type == edgebase.TypeDatabase {
			add(d.Name)
		}
	}
	instanceSources := 0
	if e.Edge != nil {
		instanceSources++
		if err := e.resolveEdge(ctx, add, &warnings); err != nil {
			return nil, nil, err
		}
	}
	if e.StateDir != "" {
		instanceSources++
		insts, err := miniflare.List(ctx, e.StateDir, "DatabaseDO")
		if err != nil {
			return nil, nil, err
		}
		for _, in := range insts {
			if in.Name == "" {
				warnings = append(warnings, fmt.Sprintf("local DO %s has no recorded name; skipped", in.HexID))
				continue
			}
			if !in.HasData {
				// Every request that names a DO leaves a file holding only
				// its name, including requests the server refused with
				// needsCreate: such a DO does not exist, and dumping it
				// would fail the whole backup.
				warnings = append(warnings, fmt.Sprintf("local DO %q stores nothing (a file left by a request for a DO that does not exist); skipped", in.Name))
				continue
			}
			add(in.Name)
		}
	}
	if len(e.Instances) > 0 {
		instanceSources++
		for _, n := range e.Instances {
			add(strings.TrimSpace(n))
		}
	}

	var out []string
	for name := range names {
		ns, id, dynamic := strings.Cut(name, ":")
		blk, ok := cfg.Block(ns)
		switch {
		case !ok:
			// "shared" is always listed by the server, even without a block;
			// its dump would be a needsCreate object, not a DO dump.
			warnings = append(warnings, fmt.Sprintf("DO %q belongs to no DB block in the config; skipped", name))
		case blk.Dynamic() && !dynamic:
			// The bare name of a dynamic block is not an instance.
		case blk.Dynamic() && id == "":
			warnings = append(warnings, fmt.Sprintf("DO %q has an empty instance id; skipped", name))
		case !blk.Dynamic() && dynamic:
			warnings = append(warnings, fmt.Sprintf("DO %q names an instance of single-instance block %q; skipped", name, ns))
		default:
			out = append(out, name)
		}
	}
	sort.Strings(out)

	if instanceSources == 0 {
		for _, b := range cfg.Databases {
			if !b.Dynamic() {
				continue
			}
			if !e.SkipInstances {
				return nil, nil, pipeline.Permanent(&NoInstanceSourceError{Block: b.Name, PackagedState: e.packagedState(ctx)})
			}
			warnings = append(warnings, fmt.Sprintf("instances of dynamic DB block %q are NOT included (--skip-instances)", b.Name))
		}
	}
	return out, warnings, nil
}

func (e *Enumerator) resolveEdge(ctx context.Context, add func(string), warnings *[]string) error {
	chunk := e.ResolveChunk
	if chunk <= 0 {
		chunk = 100
	}
	var batch []string
	resolved, total := 0, 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		dos, err := e.Client.ListDOs(ctx, batch)
		if err != nil {
			return fmt.Errorf("resolving DO ids (list-dos hexIds): %w", err)
		}
		for _, d := range dos {
			if d.Type == edgebase.TypeDatabase && d.Name != "" {
				add(d.Name)
				resolved++
			}
		}
		batch = batch[:0]
		return nil
	}
	_, err := e.Edge.DatabaseDOIDs(ctx, func(hex string) error {
		total++
		batch = append(batch, hex)
		if len(batch) >= chunk {
			return flush()
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("enumerating DOs (Cloudflare API): %w", err)
	}
	if err := flush(); err != nil {
		return err
	}
	if missing := total - resolved; missing > 0 {
		msg := fmt.Sprintf("%d of %d DatabaseDOs with stored data could not be named by list-dos (cold instances)", missing, total)
		if !e.AllowUnresolved {
			return pipeline.Permanent(fmt.Errorf("%s; their data would be missing from the backup (pass --allow-unresolved to accept that)", msg))
		}
		*warnings = append(*warnings, msg)
	}
	return nil
}
