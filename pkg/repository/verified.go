package repository

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/edgevault/edgevault/pkg/blob"
)

const prefixVerified = "verified/"

var aadVerified = []byte("edgevault verified ")

// verifiedFile is a verified/<snapshot id> file: the snapshot passed a
// full data check (every chunk it uses re-read and re-hashed) at Time.
type verifiedFile struct {
	Snapshot ID        `json:"snapshot"`
	Time     time.Time `json:"time"`
}

// verifiedAAD binds a marker to the snapshot it names, so a marker
// copied to another snapshot's name does not open.
func verifiedAAD(id ID) []byte {
	return append(bytes.Clone(aadVerified), id[:]...)
}

// Verify is Check with every pack read and re-hashed; when it finds no
// problem it records each snapshot it checked as verified (a sealed
// verified/<snapshot id> file, written once), which Forget never deletes
// the newest of. The report's Verified lists them.
func (r *Repository) Verify(ctx context.Context) (CheckReport, error) {
	rep, err := r.Check(ctx, true, 100)
	if err != nil {
		return rep, err
	}
	have, err := r.VerifiedSnapshots(ctx)
	if err != nil {
		return rep, err
	}
	for _, id := range rep.checked {
		if _, ok := have[id]; !ok {
			if err := r.markVerified(ctx, id); err != nil {
				return rep, err
			}
		}
		rep.Verified = append(rep.Verified, id)
	}
	return rep, nil
}

// markVerified writes verified/<id>. An existing marker is kept: the
// first full check that passed is the one recorded.
func (r *Repository) markVerified(ctx context.Context, id ID) error {
	plain, err := json.Marshal(verifiedFile{Snapshot: id, Time: r.now().UTC()})
	if err != nil {
		return err
	}
	b, err := r.seal.seal(nil, plain, verifiedAAD(id))
	if err != nil {
		return err
	}
	key := prefixVerified + id.String()
	if err := r.store.Create(ctx, key, bytes.NewReader(b)); err != nil && !errors.Is(err, blob.ErrExist) {
		return fmt.Errorf("repository: write %s: %w", key, err)
	}
	return nil
}

// VerifiedSnapshots maps every snapshot with a verified marker to the
// time its check passed. A marker for a snapshot that is gone (forget
// was interrupted) is listed too; one that does not open is an error.
func (r *Repository) VerifiedSnapshots(ctx context.Context) (map[ID]time.Time, error) {
	out := map[ID]time.Time{}
	err := r.listIDs(ctx, prefixVerified, func(id ID, _ int64) error {
		key := prefixVerified + id.String()
		b, err := getAll(ctx, r.store, key)
		if errors.Is(err, blob.ErrNotExist) {
			return nil // removed by a concurrent forget
		}
		if err != nil {
			return err
		}
		plain, err := r.seal.open(nil, b, verifiedAAD(id))
		if err != nil {
			return fmt.Errorf("%w: %s: %v", ErrCorrupt, key, err)
		}
		var f verifiedFile
		if err := json.Unmarshal(plain, &f); err != nil || f.Snapshot != id {
			return fmt.Errorf("%w: %s: not a marker of this snapshot", ErrCorrupt, key)
		}
		out[id] = f.Time
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("repository: list verified snapshots: %w", err)
	}
	return out, nil
}
