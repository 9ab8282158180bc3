package backup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"golang.org/x/sync/semaphore"

	"github.com/edgevault/edgevault/pkg/edgebase"
	"github.com/edgevault/edgevault/pkg/pipeline"
)

// Default spool limits.
const (
	DefaultSpoolInMemory = 1 << 20
	DefaultSpoolBytes    = 2 << 30
	spoolChunk           = 1 << 20
)

// ErrSpoolFull is returned when an object's bytes do not fit the spool's
// disk budget (only possible for an object larger than it was listed).
var ErrSpoolFull = errors.New("backup: the spool directory's budget is used up")

// Spool holds downloaded objects while they wait for their turn in a
// storage member: in memory up to InMemory bytes each, otherwise in files
// under Dir, within a disk budget that every task of the process shares.
// An object larger than the whole budget is not prefetched at all: it is
// streamed from EdgeBase straight into the member when its turn comes.
// Disk use therefore never exceeds the budget, which the serverless stack
// sizes the worker's /tmp to.
type Spool struct {
	dir      string
	inMemory int64
	budget   int64
	sem      *semaphore.Weighted

	mu         sync.Mutex
	used, peak int64 // bytes in spool files now, and at most
}

// Peak reports the most bytes the spool's files held at once.
func (sp *Spool) Peak() int64 {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	return sp.peak
}

func (sp *Spool) grow(n int64) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	sp.used += n
	sp.peak = max(sp.peak, sp.used)
}

// NewSpool returns a spool in dir ("" = the system temp directory) with a
// disk budget of budget bytes (0 = DefaultSpoolBytes) and objects up to
// inMemory bytes kept in memory (0 = DefaultSpoolInMemory).
func NewSpool(dir string, budget, inMemory int64) *Spool {
	if budget <= 0 {
		budget = DefaultSpoolBytes
	}
	if inMemory <= 0 {
		inMemory = DefaultSpoolInMemory
	}
	return &Spool{dir: dir, inMemory: inMemory, budget: budget, sem: semaphore.NewWeighted(budget)}
}

// spooled is one downloaded object waiting for its turn.
type spooled struct {
	data    []byte
	file    *budgetFile
	size    int64
	info    edgebase.ObjectInfo // what the reply said about the object
	missing bool                // deleted since the listing
	direct  bool                // too large to spool: fetch it when its turn comes
	err     error
}

func (s spooled) reader() io.Reader {
	if s.file != nil {
		return io.NewSectionReader(s.file.f, 0, s.size)
	}
	return bytes.NewReader(s.data)
}

func (s spooled) close() {
	if s.file != nil {
		s.file.close()
	}
}

// reserve takes the disk budget an object of the listed size needs before
// it is fetched, in listing order (so the objects that the member waits
// for always hold theirs); ok is false for an object that goes direct.
func (sp *Spool) reserve(ctx context.Context, o edgebase.Object) (held int64, direct bool, err error) {
	if o.Size <= sp.inMemory {
		return 0, false, nil
	}
	if o.Size > sp.budget {
		return 0, true, nil
	}
	if err := sp.sem.Acquire(ctx, o.Size); err != nil {
		return 0, false, err
	}
	return o.Size, false, nil
}

// fetch downloads o. held is the budget reserve took for it; it belongs to
// the result from here on.
func (sp *Spool) fetch(ctx context.Context, c ObjectSource, o edgebase.Object, held int64) spooled {
	var out spooled
	err := c.GetObject(ctx, o.Key, func(r io.Reader, info edgebase.ObjectInfo) error {
		out.close()
		out = spooled{info: info}
		r = pipeline.MeteredReader(ctx, r)
		if held == 0 && info.Size >= 0 && info.Size <= sp.inMemory || held == 0 && info.Size < 0 {
			// Small, or of unknown length (then the listing said small):
			// memory up to the limit, spilling to disk past it.
			buf := make([]byte, 0, max(info.Size, 0)+1)
			b := bytes.NewBuffer(buf)
			n, err := io.Copy(b, io.LimitReader(r, sp.inMemory+1))
			if err != nil {
				return err
			}
			if n <= sp.inMemory {
				out.data, out.size = b.Bytes(), n
				return nil
			}
			r = io.MultiReader(b, r)
		}
		f, err := sp.newFile(held)
		held = 0 // the file owns the reservation now, even on a retry
		if err != nil {
			return err
		}
		out.file = f
		out.size, err = io.Copy(f, r)
		return err
	})
	if held > 0 {
		sp.sem.Release(held)
	}
	if errors.Is(err, edgebase.ErrNotFound) {
		out.close()
		return spooled{missing: true}
	}
	if err != nil {
		out.close()
		return spooled{err: err}
	}
	return out
}

// budgetFile is a spool file that takes disk budget as it grows: it starts
// with what reserve took and, past it, takes more a chunk at a time
// without waiting (waiting could deadlock behind objects of its own range
// that hold the rest).
type budgetFile struct {
	sp   *Spool
	f    *os.File
	held int64
	n    int64
}

func (sp *Spool) newFile(held int64) (*budgetFile, error) {
	f, err := os.CreateTemp(sp.dir, "edgevault-object-*")
	if err != nil {
		if held > 0 {
			sp.sem.Release(held)
		}
		return nil, fmt.Errorf("backup: spool: %w", err)
	}
	return &budgetFile{sp: sp, f: f, held: held}, nil
}

func (b *budgetFile) Write(p []byte) (int, error) {
	for b.n+int64(len(p)) > b.held {
		more := max(int64(spoolChunk), b.n+int64(len(p))-b.held)
		if !b.sp.sem.TryAcquire(more) {
			return 0, fmt.Errorf("%w (%d bytes)", ErrSpoolFull, b.sp.budget)
		}
		b.held += more
	}
	n, err := b.f.Write(p)
	b.n += int64(n)
	b.sp.grow(int64(n))
	return n, err
}

func (b *budgetFile) close() {
	b.f.Close()
	os.Remove(b.f.Name())
	b.sp.grow(-b.n)
	if b.held > 0 {
		b.sp.sem.Release(b.held)
		b.held = 0
	}
}
