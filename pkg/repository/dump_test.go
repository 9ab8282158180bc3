package repository

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// doDump renders a DO dump of rows rows; edit picks rows whose body
// changes.
func doDump(rows int, edit func(i int) bool) []byte {
	var b bytes.Buffer
	b.WriteString(`{"doName":"big","doType":"database","tables":{"items":[`)
	for i := range rows {
		if i > 0 {
			b.WriteByte(',')
		}
		v := "v1"
		if edit != nil && edit(i) {
			v = "v2"
		}
		fmt.Fprintf(&b, `{"id":%d,"rev":%q,"body":"row %d %x"}`, i, v, i, randomBytes(uint64(i), 64))
	}
	b.WriteString(`]},"timestamp":""}`)
	return b.Bytes()
}

// TestDumpChangeCost measures what a second dump of one DO adds to the
// repository when 1 % of its rows changed, by where the changes are.
func TestDumpChangeCost(t *testing.T) {
	if testing.Short() {
		t.Skip("measurement")
	}
	ctx := context.Background()
	const rows = 200000 // about 40 MiB
	base := doDump(rows, nil)
	cases := []struct {
		name string
		data []byte
	}{
		{"1% rows appended", append(bytes.Clone(base[:len(base)-len(`]},"timestamp":""}`)]), []byte(fmt.Sprintf(`,%s]},"timestamp":""}`, bytes.Repeat([]byte(`{"id":0,"body":"new row 0123456789abcdef0123456789abcdef"}`), rows/100)))...)},
		{"1% rows changed in one range", doDump(rows, func(i int) bool { return i >= rows/2 && i < rows/2+rows/100 })},
		{"1% rows changed, scattered", doDump(rows, func(i int) bool { return i%100 == 7 })},
	}
	for _, c := range cases {
		store, _ := newStore(t)
		r := initRepo(t, store)
		if _, _, err := r.SaveStream(ctx, bytes.NewReader(base)); err != nil {
			t.Fatal(err)
		}
		if err := r.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		first := r.Stats()
		if _, _, err := r.SaveStream(ctx, bytes.NewReader(c.data)); err != nil {
			t.Fatal(err)
		}
		if err := r.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		second := r.Stats()
		t.Logf("%d-byte DO dump, %s: second save wrote %d bytes = %.1f%% of the first (%d bytes)",
			len(base), c.name, second.Written-first.Written, 100*float64(second.Written-first.Written)/float64(first.Written), first.Written)
	}
}

// endless yields n reproducible incompressible bytes without holding them.
type endless struct {
	n, off int64
	block  []byte
}

func (e *endless) Read(p []byte) (int, error) {
	if e.off >= e.n {
		return 0, io.EOF
	}
	if int64(len(p)) > e.n-e.off {
		p = p[:e.n-e.off]
	}
	for i := range p {
		p[i] = e.block[(e.off+int64(i))%int64(len(e.block))] ^ byte((e.off+int64(i))/int64(len(e.block)))
	}
	e.off += int64(len(p))
	return len(p), nil
}

// TestSaveLoadMemoryBounded saves and loads a 256 MiB stream and samples
// the heap: it must stay near one chunk buffer plus one pack, not grow
// with the stream.
func TestSaveLoadMemoryBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("measurement")
	}
	ctx := context.Background()
	store, _ := newStore(t)
	r := initRepo(t, store)
	// The soft memory limit edgevault's commands run with (cli.SetMemoryLimit):
	// the heap measured is then what is live, not what GC pacing lets pile up.
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(48 << 20))
	runtime.GC()
	runtime.GC() // the second empties sync.Pool victims of earlier tests
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	t.Logf("heap in use before: %.1f MiB, %d goroutines", float64(base.HeapInuse)/(1<<20), runtime.NumGoroutine())
	var peak atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	})
	const size = 256 << 20
	list, n, err := r.SaveStream(ctx, &endless{n: size, block: randomBytes(9, 1<<20+17)})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	var cw countWriter
	if err := r.LoadStream(ctx, list, &cw); err != nil {
		t.Fatal(err)
	}
	close(stop)
	wg.Wait()
	grew := peak.Load() - min(peak.Load(), base.HeapInuse)
	t.Logf("saved and loaded %d bytes (%d chunks); peak heap in use %.1f MiB, %.1f MiB above the start", n, len(list), float64(peak.Load())/(1<<20), float64(grew)/(1<<20))
	if n != size || cw.n != size {
		t.Fatalf("saved %d, loaded %d, want %d", n, cw.n, size)
	}
	if grew > 64<<20 {
		t.Fatalf("the heap grew by %d bytes, want under 64 MiB", grew)
	}
}
