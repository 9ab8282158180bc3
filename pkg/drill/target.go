package drill

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/edgevault/edgevault/pkg/edgebase"
)

// ReadTarget reads back from the target every unit the archive holds (and,
// when the archive carries storage, every object), through the admin API.
// A DO the target does not have is recorded as absent (nil tables).
func ReadTarget(ctx context.Context, c *edgebase.Client, want *Inventory, concurrency int) (*Inventory, error) {
	inv := &Inventory{Units: map[UnitID]Tables{}, Objects: map[string]ObjectSum{}, HasStorage: want.HasStorage}
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(concurrency, 1))
	for _, id := range want.UnitIDs() {
		g.Go(func() error {
			ts, err := dumpUnit(gctx, c, id)
			if errors.Is(err, errNeedsCreate) {
				ts, err = nil, nil
			}
			if err != nil {
				return fmt.Errorf("drill: reading back %s: %w", id, err)
			}
			mu.Lock()
			inv.Units[id] = ts
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if !want.HasStorage {
		return inv, nil
	}
	g, gctx = errgroup.WithContext(ctx)
	g.SetLimit(max(concurrency, 1))
	_, err := c.ListStorage(gctx, func(o edgebase.Object) error {
		if edgebase.IsInternalKey(o.Key) || o.Key == MarkerKey {
			return nil
		}
		g.Go(func() error {
			sum, masked, err := getObject(gctx, c, o.Key)
			if err != nil {
				return err
			}
			mu.Lock()
			inv.Objects[o.Key] = sum
			if masked {
				inv.MaskedTypes++
			}
			mu.Unlock()
			return nil
		})
		return gctx.Err()
	})
	if werr := g.Wait(); err == nil {
		err = werr
	}
	if err != nil {
		return nil, fmt.Errorf("drill: reading back storage: %w", err)
	}
	return inv, nil
}

func dumpUnit(ctx context.Context, c *edgebase.Client, id UnitID) (Tables, error) {
	var ts Tables
	read := func(r io.Reader) (err error) {
		ts, err = readTables(r, true)
		return err
	}
	var err error
	switch id.Kind {
	case KindControl:
		err = c.DumpControlD1(ctx, read)
	case KindAuth:
		err = c.DumpD1(ctx, read)
	case KindDO:
		err = c.DumpDO(ctx, id.Name, "database", read)
	case KindNamespace:
		err = c.DumpData(ctx, id.Name, read)
	default:
		err = fmt.Errorf("unknown unit kind %q", id.Kind)
	}
	return ts, err
}

func getObject(ctx context.Context, c *edgebase.Client, key string) (ObjectSum, bool, error) {
	var sum ObjectSum
	var masked bool
	err := c.GetObject(ctx, key, func(r io.Reader, info edgebase.ObjectInfo) error {
		h := sha256.New()
		n, err := io.Copy(h, r)
		if err != nil {
			return err
		}
		sum = ObjectSum{Size: n, SHA256: hex.EncodeToString(h.Sum(nil)), ContentType: info.ContentType}
		masked = info.Masked
		return nil
	})
	if err != nil {
		return sum, false, fmt.Errorf("get %s: %w", key, err)
	}
	return sum, masked, nil
}
