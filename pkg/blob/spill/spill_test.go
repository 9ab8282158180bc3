package spill_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"testing"

	"github.com/edgevault/edgevault/pkg/blob"
	"github.com/edgevault/edgevault/pkg/blob/blobtest"
	"github.com/edgevault/edgevault/pkg/blob/fs"
	"github.com/edgevault/edgevault/pkg/blob/spill"
	"github.com/edgevault/edgevault/pkg/pipeline"
)

func newStore(t *testing.T, o spill.Options) (*spill.Store, *fs.Store) {
	t.Helper()
	disk, err := fs.NewWithOptions(t.TempDir(), fs.Options{NoSync: func(string) bool { return true }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { disk.Close() })
	s, err := spill.New(context.Background(), disk, o)
	if err != nil {
		t.Fatal(err)
	}
	return s, disk
}

// The suite runs with the default sizes (its small blobs in memory, its
// multi-MiB ones on disk) and with a memory tier so small that most of
// its blobs go to disk over budget.
func TestConformance(t *testing.T) {
	blobtest.Run(t, func(t *testing.T) pipeline.BlobStore { s, _ := newStore(t, spill.Options{}); return s })
}

func TestConformanceOverBudget(t *testing.T) {
	blobtest.Run(t, func(t *testing.T) pipeline.BlobStore {
		s, _ := newStore(t, spill.Options{Small: 8, Budget: 100})
		return s
	})
}

// diskKeys lists what reached the disk tier.
func diskKeys(t *testing.T, d *fs.Store) []string {
	t.Helper()
	var ks []string
	if err := d.List(context.Background(), "", func(in blob.Info) error { ks = append(ks, in.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	return ks
}

// Small blobs stay off the disk while they fit the budget; a blob moving
// between the tiers (overwritten with another size) is in one of them.
func TestTiers(t *testing.T) {
	ctx := context.Background()
	s, disk := newStore(t, spill.Options{Small: 16, Budget: 300})
	for i := range 3 {
		if err := s.Put(ctx, fmt.Sprintf("small/%d", i), bytes.NewReader([]byte("tiny"))); err != nil {
			t.Fatal(err)
		}
	}
	if got := diskKeys(t, disk); len(got) != 0 {
		t.Fatalf("small blobs on disk: %q", got)
	}
	big := bytes.Repeat([]byte("x"), 100)
	if err := s.Put(ctx, "small/1", bytes.NewReader(big)); err != nil {
		t.Fatal(err)
	}
	if got := diskKeys(t, disk); !slices.Equal(got, []string{"small/1"}) {
		t.Fatalf("disk holds %q, want the grown blob only", got)
	}
	if err := s.Put(ctx, "small/1", bytes.NewReader([]byte("small again"))); err != nil {
		t.Fatal(err)
	}
	if got := diskKeys(t, disk); len(got) != 0 {
		t.Fatalf("a blob back in memory left %q on disk", got)
	}
	// The budget (300 bytes, keys and 64 bytes an entry included) holds
	// three; the fourth and later go to disk.
	for i := 3; i < 6; i++ {
		if err := s.Put(ctx, fmt.Sprintf("small/%d", i), bytes.NewReader([]byte("tiny"))); err != nil {
			t.Fatal(err)
		}
	}
	if got := len(diskKeys(t, disk)); got != 3 {
		t.Fatalf("%d blobs on disk over budget, want 3", got)
	}
	var listed []string
	if err := s.List(ctx, "small/", func(in blob.Info) error { listed = append(listed, in.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	if want := []string{"small/0", "small/1", "small/2", "small/3", "small/4", "small/5"}; !slices.Equal(listed, want) {
		t.Fatalf("List = %q, want %q", listed, want)
	}
	// Deleting frees the budget.
	for i := range 6 {
		if err := s.Delete(ctx, fmt.Sprintf("small/%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if got := diskKeys(t, disk); len(got) != 0 {
		t.Fatalf("deleted blobs left %q on disk", got)
	}
	for i := range 3 {
		if err := s.Put(ctx, fmt.Sprintf("again/%d", i), bytes.NewReader([]byte("tiny"))); err != nil {
			t.Fatal(err)
		}
	}
	if got := diskKeys(t, disk); len(got) != 0 {
		t.Fatalf("after deletes the budget still counted them: %q on disk", got)
	}
}

// A key written concurrently with small and large bodies, replaced and
// read all along, always reads as one complete write (never missing),
// and ends in one tier.
func TestConcurrentWritesAcrossTiers(t *testing.T) {
	ctx := context.Background()
	s, disk := newStore(t, spill.Options{Small: 16, Budget: 1 << 20})
	bodies := [][]byte{[]byte("small"), bytes.Repeat([]byte("L"), 4096), []byte("other small"), bytes.Repeat([]byte("M"), 100)}
	if err := s.Put(ctx, "k", bytes.NewReader(bodies[0])); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var readers sync.WaitGroup
	var bad error
	var once sync.Once
	for range 4 {
		readers.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				rc, err := s.Get(ctx, "k")
				if err != nil {
					once.Do(func() { bad = err })
					return
				}
				got, err := io.ReadAll(rc)
				rc.Close()
				if err != nil || !slices.ContainsFunc(bodies, func(b []byte) bool { return bytes.Equal(b, got) }) {
					once.Do(func() { bad = fmt.Errorf("read %d bytes that no write wrote (%v)", len(got), err) })
					return
				}
			}
		})
	}
	var writers sync.WaitGroup
	for w := range 4 {
		writers.Go(func() {
			for i := range 200 {
				b := bodies[(w+i)%len(bodies)]
				if i%3 == 0 {
					rc, v, err := s.ReadVersion(ctx, "k")
					if err != nil {
						once.Do(func() { bad = err })
						return
					}
					rc.Close()
					if err := s.Replace(ctx, "k", bytes.NewReader(b), v); err != nil && !errors.Is(err, blob.ErrConflict) {
						once.Do(func() { bad = err })
						return
					}
					continue
				}
				if err := s.Put(ctx, "k", bytes.NewReader(b)); err != nil {
					once.Do(func() { bad = err })
					return
				}
			}
		})
	}
	writers.Wait()
	close(stop)
	readers.Wait()
	if bad != nil {
		t.Fatal(bad)
	}
	info, err := s.Stat(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	onDisk := slices.Contains(diskKeys(t, disk), "k")
	if onDisk != (info.Size > 16) {
		t.Fatalf("the final %d-byte blob is on disk: %v", info.Size, onDisk)
	}
	var n int
	if err := s.List(ctx, "", func(blob.Info) error { n++; return nil }); err != nil || n != 1 {
		t.Fatalf("List gave %d keys (%v), want 1", n, err)
	}
}

// A disk that already holds blobs is read for every key.
func TestUsedDirectory(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	disk, err := fs.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer disk.Close()
	if err := disk.Put(ctx, "left/over", bytes.NewReader([]byte("x"))); err != nil {
		t.Fatal(err)
	}
	s, err := spill.New(ctx, disk, spill.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stat(ctx, "left/over"); err != nil {
		t.Fatalf("a blob already on disk: %v", err)
	}
	if err := s.Create(ctx, "left/over", bytes.NewReader([]byte("y"))); !errors.Is(err, blob.ErrExist) {
		t.Fatalf("Create over a blob already on disk: %v", err)
	}
	if err := s.Put(ctx, "spill-ok", bytes.NewReader(nil)); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, ".spill/x", bytes.NewReader(nil)); err == nil {
		t.Fatal("the reserved prefix was accepted")
	}
}
