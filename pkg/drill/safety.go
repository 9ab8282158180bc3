package drill

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/edgevault/edgevault/pkg/edgebase"
)

// MarkerKey is the storage object that declares a deployment a drill
// scratch target. The drill writes it on first use and again after each
// restore (the restore's storage wipe removes it); read-back ignores it.
const MarkerKey = "edgevault-drill/scratch-target.json"

// Refusals, each returned before anything is written to the target.
var (
	ErrSourceTarget = errors.New("drill: the target is the archive's own source")
	ErrTargetKey    = errors.New("drill: the target refused the service key")
	ErrNotScratch   = errors.New("drill: the target holds data and is not declared scratch")
)

// Marker is the content of MarkerKey.
type Marker struct {
	Scratch   bool      `json:"scratch"`
	Target    string    `json:"target"`
	CreatedAt time.Time `json:"createdAt"`
}

// Guard decides whether a drill may write to a target.
type Guard struct {
	Client *edgebase.Client
	// SourceURL is the archive's source deployment ("" when the archive
	// does not say, e.g. an official CLI archive without a manifest).
	SourceURL string
	// Confirm is --scratch-confirm: the target's URL repeated.
	Confirm string
}

// Check runs every guard, reading only: the target is not the source, the
// key is accepted, and the target is empty, marked scratch, or confirmed
// scratch. want lists the units the drill will restore (the DOs to look
// into). It reports whether the marker is already present.
func (g Guard) Check(ctx context.Context, want *Inventory) (marked bool, err error) {
	target := g.Client.BaseURL()
	if g.SourceURL != "" {
		if src, err := edgebase.NormalizeBaseURL(g.SourceURL); err == nil && sameURL(src, target) {
			return false, fmt.Errorf("%w: %s is where the archive was taken from; a drill restores into a scratch deployment only", ErrSourceTarget, target)
		}
	}
	if _, _, err := g.Client.Config(ctx); err != nil {
		if errors.Is(err, edgebase.ErrUnauthorized) || errors.Is(err, edgebase.ErrForbidden) || errors.Is(err, edgebase.ErrScope) {
			return false, fmt.Errorf("%w: %s: %w", ErrTargetKey, target, err)
		}
		return false, fmt.Errorf("drill: reading the target's config: %w", err)
	}
	marked, err = g.marked(ctx)
	if err != nil || marked {
		return marked, err
	}
	if g.Confirm != "" {
		c, err := edgebase.NormalizeBaseURL(g.Confirm)
		if err != nil || !sameURL(c, target) {
			return false, fmt.Errorf("%w: --scratch-confirm %q does not repeat the target URL %s", ErrNotScratch, g.Confirm, target)
		}
		return false, nil
	}
	found, err := g.contents(ctx, want)
	if err != nil {
		return false, err
	}
	if len(found) > 0 {
		return false, fmt.Errorf("%w: %s holds %s; pass --scratch-confirm %s if it really is a scratch deployment (its data will be replaced)",
			ErrNotScratch, target, strings.Join(found, ", "), target)
	}
	return false, nil
}

func sameURL(a, b string) bool {
	return strings.EqualFold(strings.TrimSuffix(a, "/"), strings.TrimSuffix(b, "/"))
}

// marked reports whether the target carries the drill's marker naming it.
func (g Guard) marked(ctx context.Context) (bool, error) {
	var m Marker
	err := g.Client.GetObject(ctx, MarkerKey, func(r io.Reader, _ edgebase.ObjectInfo) error {
		return json.NewDecoder(io.LimitReader(r, 64<<10)).Decode(&m)
	})
	switch {
	case errors.Is(err, edgebase.ErrNotFound):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("drill: reading the scratch marker: %w", err)
	}
	return m.Scratch && sameURL(m.Target, g.Client.BaseURL()), nil
}

// contents names what the target holds: users, storage objects, rows in
// the archive's DOs and namespaces and in the DOs its config lists.
func (g Guard) contents(ctx context.Context, want *Inventory) ([]string, error) {
	var found []string
	ids := map[UnitID]bool{{Kind: KindAuth}: true}
	for id := range want.Units {
		if id.Kind == KindDO || id.Kind == KindNamespace {
			ids[id] = true
		}
	}
	dos, err := g.Client.ListDOs(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("drill: listing the target's DOs: %w", err)
	}
	listed := map[UnitID]bool{}
	for _, d := range dos {
		id := UnitID{Kind: KindDO, Name: d.Name}
		if d.Type == "database" && !ids[id] {
			ids[id], listed[id] = true, true
		}
	}
	probe := &Inventory{Units: map[UnitID]Tables{}}
	for id := range ids {
		probe.Units[id] = nil
	}
	for _, id := range probe.UnitIDs() {
		ts, err := dumpUnit(ctx, g.Client, id)
		if errors.Is(err, errNeedsCreate) || (listed[id] && errors.Is(err, edgebase.ErrBadRequest)) {
			// Never created; or a config-scan name of a dynamic
			// namespace, which is no DO (its instances are in want).
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("drill: looking into the target's %s: %w", id, err)
		}
		if id.Kind == KindAuth {
			if t := ts["_users"]; t != nil && t.Rows > 0 {
				found = append(found, fmt.Sprintf("%d users", t.Rows))
			}
			continue
		}
		if n := rowsOf(ts); n > 0 {
			found = append(found, fmt.Sprintf("%d rows in %s", n, id))
		}
	}
	var objects int64
	if _, err := g.Client.ListStorage(ctx, func(o edgebase.Object) error {
		if !edgebase.IsInternalKey(o.Key) && o.Key != MarkerKey {
			objects++
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("drill: listing the target's storage: %w", err)
	}
	if objects > 0 {
		found = append(found, fmt.Sprintf("%d storage objects", objects))
	}
	return found, nil
}

// WriteMarker declares the target scratch (the drill's first write).
func WriteMarker(ctx context.Context, c *edgebase.Client, now time.Time) error {
	b, err := json.Marshal(Marker{Scratch: true, Target: c.BaseURL(), CreatedAt: now.UTC()})
	if err != nil {
		return err
	}
	if err := c.PutObject(ctx, MarkerKey, "application/json", int64(len(b)), edgebase.BytesBody(b)); err != nil {
		return fmt.Errorf("drill: writing the scratch marker: %w", err)
	}
	return nil
}
