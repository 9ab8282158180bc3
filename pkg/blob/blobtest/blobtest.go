package blobtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"testing"

	"github.com/edgevault/edgevault/pkg/blob"
	"github.com/edgevault/edgevault/pkg/pipeline"
)

const mib = 1 << 20

// BigSize is the size of the suite's multi-MiB blobs. Adapters that switch
// to multipart uploads should be configured with a part size below it
// (5 MiB for S3) so the suite covers several parts.
const BigSize = 12*mib + 123

// oddKeys are valid keys with characters that need escaping in URLs and
// shells; every adapter must store them verbatim.
var oddKeys = []string{
	"plain",
	"dir/sub/file.json",
	"unicode/日本語/ключ/émoji-🙂",
	"spaces/a b  c/ leading and trailing ",
	"percent/100%/%2F%25",
	"hash/#fragment#",
	"question/?x=1&y=2",
	"plus/a+b+c",
	"mixed/ +%#?&=;:@$,!'()*[]~",
}

// invalidKeys break blob.ValidateKey; every operation must reject them.
var invalidKeys = []string{"", "/a", "a/", "a//b", "./a", "a/./b", "a/../b", "..", "a\\b", "a\x00b"}

var errBoom = errors.New("blobtest: reader failed")

// Run runs the BlobStore suite, and the Composer suite when the store
// implements pipeline.Composer. newStore must return a fresh, empty store on
// each call.
func Run(t *testing.T, newStore func(t *testing.T) pipeline.BlobStore) {
	t.Run("RoundTrip", func(t *testing.T) { testRoundTrip(t, newStore(t)) })
	t.Run("Overwrite", func(t *testing.T) { testOverwrite(t, newStore(t)) })
	t.Run("PutAtomic", func(t *testing.T) { testPutAtomic(t, newStore(t)) })
	t.Run("InFlightInvisible", func(t *testing.T) { testInFlightInvisible(t, newStore(t)) })
	t.Run("Create", func(t *testing.T) { testCreate(t, newStore(t)) })
	t.Run("CreateConcurrent", func(t *testing.T) { testCreateConcurrent(t, newStore(t)) })
	t.Run("Replace", func(t *testing.T) { testReplace(t, newStore(t)) })
	t.Run("ReplaceConcurrent", func(t *testing.T) { testReplaceConcurrent(t, newStore(t)) })
	t.Run("NotExist", func(t *testing.T) { testNotExist(t, newStore(t)) })
	t.Run("GetRange", func(t *testing.T) { testGetRange(t, newStore(t)) })
	t.Run("ListOrder", func(t *testing.T) { testListOrder(t, newStore(t)) })
	t.Run("ListPages", func(t *testing.T) { testListPages(t, newStore(t)) })
	t.Run("Delete", func(t *testing.T) { testDelete(t, newStore(t)) })
	t.Run("invalidKeys", func(t *testing.T) { testinvalidKeys(t, newStore(t)) })
	t.Run("Cancel", func(t *testing.T) { testCancel(t, newStore(t)) })
	t.Run("Compose", func(t *testing.T) {
		s := newStore(t)
		c, ok := s.(pipeline.Composer)
		if !ok {
			t.Skip("store does not implement pipeline.Composer")
		}
		testCompose(t, s, c)
	})
}

func put(t *testing.T, s pipeline.BlobStore, key string, data []byte) {
	t.Helper()
	if err := s.Put(context.Background(), key, bytes.NewReader(data)); err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
}

func get(t *testing.T, s pipeline.BlobStore, key string) []byte {
	t.Helper()
	rc, err := s.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("Get(%q): read: %v", key, err)
	}
	return b
}

func digest(t *testing.T, rc io.ReadCloser, err error) ([32]byte, int64) {
	t.Helper()
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer rc.Close()
	h := sha256.New()
	n, err := io.Copy(h, rc)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return [32]byte(h.Sum(nil)), n
}

func list(t *testing.T, s pipeline.BlobStore, prefix string) []blob.Info {
	t.Helper()
	var out []blob.Info
	if err := s.List(context.Background(), prefix, func(i blob.Info) error {
		out = append(out, i)
		return nil
	}); err != nil {
		t.Fatalf("List(%q): %v", prefix, err)
	}
	return out
}

func keys(infos []blob.Info) []string {
	out := make([]string, len(infos))
	for i, in := range infos {
		out[i] = in.Key
	}
	return out
}

func wantNotExist(t *testing.T, op string, err error) {
	t.Helper()
	if !errors.Is(err, blob.ErrNotExist) {
		t.Fatalf("%s: got %v, want an error wrapping blob.ErrNotExist", op, err)
	}
}

// failAfter yields r and then fails with errBoom instead of io.EOF.
type failAfter struct{ r io.Reader }

func (f failAfter) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		return n, errBoom
	}
	return n, err
}

func testRoundTrip(t *testing.T, s pipeline.BlobStore) {
	ctx := context.Background()
	for i, key := range oddKeys {
		body := []byte(fmt.Sprintf("body %d of %q", i, key))
		put(t, s, key, body)
		if got := get(t, s, key); !bytes.Equal(got, body) {
			t.Errorf("Get(%q) = %q, want %q", key, got, body)
		}
		info, err := s.Stat(ctx, key)
		if err != nil {
			t.Fatalf("Stat(%q): %v", key, err)
		}
		if info.Key != key || info.Size != int64(len(body)) {
			t.Errorf("Stat(%q) = %+v, want size %d", key, info, len(body))
		}
	}
	if got, want := keys(list(t, s, "")), slices.Sorted(slices.Values(oddKeys)); !slices.Equal(got, want) {
		t.Errorf("List = %q, want %q", got, want)
	}

	put(t, s, "empty", nil)
	if got := get(t, s, "empty"); len(got) != 0 {
		t.Errorf("empty blob read back %d bytes", len(got))
	}
	if info, err := s.Stat(ctx, "empty"); err != nil || info.Size != 0 {
		t.Errorf("Stat(empty) = %+v, %v", info, err)
	}

	// A plain io.Reader (no Len, Seek or WriterTo) of unknown size.
	if err := s.Put(ctx, "big", Random(1, BigSize)); err != nil {
		t.Fatalf("Put(big): %v", err)
	}
	rc, err := s.Get(ctx, "big")
	if sum, n := digest(t, rc, err); n != BigSize || sum != Digest(1, BigSize) {
		t.Errorf("big blob read back %d bytes, digest mismatch %v", n, sum != Digest(1, BigSize))
	}
	if info, err := s.Stat(ctx, "big"); err != nil || info.Size != BigSize {
		t.Errorf("Stat(big) = %+v, %v", info, err)
	}
}

func testOverwrite(t *testing.T, s pipeline.BlobStore) {
	put(t, s, "k", []byte("first version, longer"))
	put(t, s, "k", []byte("second"))
	if got := string(get(t, s, "k")); got != "second" {
		t.Fatalf("after overwrite Get = %q", got)
	}
	if got := keys(list(t, s, "")); !slices.Equal(got, []string{"k"}) {
		t.Fatalf("after overwrite List = %q", got)
	}
}

func testPutAtomic(t *testing.T, s pipeline.BlobStore) {
	ctx := context.Background()
	put(t, s, "k", []byte("old"))
	for _, n := range []int64{0, 100, BigSize - mib} {
		err := s.Put(ctx, "k", failAfter{Random(2, n)})
		if !errors.Is(err, errBoom) {
			t.Fatalf("Put with a reader failing after %d bytes: got %v, want the reader's error", n, err)
		}
		if got := string(get(t, s, "k")); got != "old" {
			t.Fatalf("failed Put of %d bytes replaced the blob: %q", n, got)
		}
		err = s.Put(ctx, "new", failAfter{Random(2, n)})
		if !errors.Is(err, errBoom) {
			t.Fatalf("Put(new) with a failing reader: got %v", err)
		}
		_, err = s.Stat(ctx, "new")
		wantNotExist(t, "Stat after failed Put", err)
	}
	if got := list(t, s, ""); len(got) != 1 || got[0] != (blob.Info{Key: "k", Size: 3}) {
		t.Fatalf("List after failed Puts = %+v, want only k", got)
	}
}

func testInFlightInvisible(t *testing.T, s pipeline.BlobStore) {
	ctx := context.Background()
	put(t, s, "done", []byte("x"))
	pr, pw := io.Pipe()
	errc := make(chan error, 1)
	go func() { errc <- s.Put(ctx, "inflight/blob", pr) }()
	// More than one S3 part, so a multipart upload is open on the server.
	if _, err := io.Copy(pw, Random(3, 6*mib)); err != nil {
		t.Fatalf("write to pipe: %v", err)
	}
	if got := keys(list(t, s, "")); !slices.Equal(got, []string{"done"}) {
		t.Errorf("List during a Put = %q, want only the finished blob", got)
	}
	_, err := s.Stat(ctx, "inflight/blob")
	wantNotExist(t, "Stat during a Put", err)
	pw.CloseWithError(errBoom)
	if err := <-errc; !errors.Is(err, errBoom) {
		t.Fatalf("Put = %v, want the reader's error", err)
	}
	if got := keys(list(t, s, "")); !slices.Equal(got, []string{"done"}) {
		t.Errorf("List after a failed Put = %q", got)
	}
}

func testCreate(t *testing.T, s pipeline.BlobStore) {
	ctx := context.Background()
	if err := s.Create(ctx, "fence", bytes.NewReader([]byte("one"))); err != nil {
		t.Fatalf("first Create: %v", err)
	}
	err := s.Create(ctx, "fence", bytes.NewReader([]byte("two")))
	if !errors.Is(err, blob.ErrExist) {
		t.Fatalf("second Create: got %v, want blob.ErrExist", err)
	}
	if got := string(get(t, s, "fence")); got != "one" {
		t.Fatalf("second Create changed the blob to %q", got)
	}
	// Large bodies take the multipart path on S3.
	if err := s.Create(ctx, "fence", Random(4, BigSize)); !errors.Is(err, blob.ErrExist) {
		t.Fatalf("large Create over an existing key: got %v, want blob.ErrExist", err)
	}
	if err := s.Create(ctx, "big-fence", Random(4, BigSize)); err != nil {
		t.Fatalf("large Create: %v", err)
	}
	rc, err := s.Get(ctx, "big-fence")
	if sum, n := digest(t, rc, err); n != BigSize || sum != Digest(4, BigSize) {
		t.Fatalf("large Create stored %d bytes (digest ok %v)", n, sum == Digest(4, BigSize))
	}
	if err := s.Delete(ctx, "fence"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if err := s.Create(ctx, "fence", failAfter{bytes.NewReader([]byte("partial"))}); !errors.Is(err, errBoom) {
		t.Fatalf("Create with a failing reader: got %v", err)
	}
	_, err = s.Stat(ctx, "fence")
	wantNotExist(t, "Stat after failed Create", err)
	if err := s.Create(ctx, "fence", bytes.NewReader([]byte("three"))); err != nil {
		t.Fatalf("Create after Delete: %v", err)
	}
	if got := string(get(t, s, "fence")); got != "three" {
		t.Fatalf("Create after Delete stored %q", got)
	}
}

func testCreateConcurrent(t *testing.T, s pipeline.BlobStore) {
	const n = 8
	for round := range 3 {
		key := fmt.Sprintf("race/%d", round)
		var wg sync.WaitGroup
		start := make(chan struct{})
		errs := make([]error, n)
		for i := range n {
			wg.Go(func() {
				<-start
				errs[i] = s.Create(context.Background(), key, bytes.NewReader([]byte(fmt.Sprintf("writer %d", i))))
			})
		}
		close(start)
		wg.Wait()
		winner := -1
		for i, err := range errs {
			switch {
			case err == nil && winner >= 0:
				t.Fatalf("round %d: writers %d and %d both won", round, winner, i)
			case err == nil:
				winner = i
			case !errors.Is(err, blob.ErrExist):
				t.Fatalf("round %d: writer %d: %v", round, i, err)
			}
		}
		if winner < 0 {
			t.Fatalf("round %d: no writer won", round)
		}
		if got, want := string(get(t, s, key)), fmt.Sprintf("writer %d", winner); got != want {
			t.Fatalf("round %d: blob = %q, want the winner's %q", round, got, want)
		}
	}
}

func readVersion(t *testing.T, s pipeline.BlobStore, key string) (string, blob.Version) {
	t.Helper()
	rc, v, err := s.ReadVersion(context.Background(), key)
	if err != nil {
		t.Fatalf("ReadVersion %s: %v", key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	if v == "" {
		t.Fatalf("ReadVersion %s: empty version", key)
	}
	return string(b), v
}

// testReplace: Replace succeeds only on the version that was read; a
// replaced, overwritten or deleted blob refuses it with blob.ErrConflict
// and keeps its content; a failing reader changes nothing.
func testReplace(t *testing.T, s pipeline.BlobStore) {
	ctx := context.Background()
	put(t, s, "rec", []byte("v1"))
	got, v1 := readVersion(t, s, "rec")
	if got != "v1" {
		t.Fatalf("ReadVersion read %q", got)
	}
	if err := s.Replace(ctx, "rec", bytes.NewReader([]byte("v2")), v1); err != nil {
		t.Fatalf("Replace of the version read: %v", err)
	}
	got, v2 := readVersion(t, s, "rec")
	if got != "v2" || v2 == v1 {
		t.Fatalf("after Replace: %q, version changed %v", got, v2 != v1)
	}
	// The old version is gone: a second writer that read v1 loses.
	if err := s.Replace(ctx, "rec", bytes.NewReader([]byte("stale")), v1); !errors.Is(err, blob.ErrConflict) {
		t.Fatalf("Replace of a replaced version: got %v, want blob.ErrConflict", err)
	}
	// A plain Put in between makes the version stale too. (A version may
	// name content: S3's ETag of a single upload is its MD5, so the same
	// bytes written again can keep it; job records never repeat bytes.)
	put(t, s, "rec", []byte("v2 again"))
	if err := s.Replace(ctx, "rec", bytes.NewReader([]byte("x")), v2); !errors.Is(err, blob.ErrConflict) {
		t.Fatalf("Replace after a Put: got %v, want blob.ErrConflict", err)
	}
	_, v3 := readVersion(t, s, "rec")
	if err := s.Replace(ctx, "rec", failAfter{bytes.NewReader([]byte("partial"))}, v3); !errors.Is(err, errBoom) {
		t.Fatalf("Replace with a failing reader: got %v", err)
	}
	if got, v := readVersion(t, s, "rec"); got != "v2 again" || v != v3 {
		t.Fatalf("a failed Replace changed the blob: %q (same version %v)", got, v == v3)
	}
	// Large bodies take the multipart path on S3.
	if err := s.Replace(ctx, "rec", Random(5, BigSize), v3); err != nil {
		t.Fatalf("large Replace: %v", err)
	}
	rc, err := s.Get(ctx, "rec")
	if sum, n := digest(t, rc, err); n != BigSize || sum != Digest(5, BigSize) {
		t.Fatalf("large Replace stored %d bytes", n)
	}
	if err := s.Replace(ctx, "rec", bytes.NewReader([]byte("y")), v3); !errors.Is(err, blob.ErrConflict) {
		t.Fatalf("Replace of the version a large Replace replaced: got %v", err)
	}
	_, v4 := readVersion(t, s, "rec")
	if err := s.Delete(ctx, "rec"); err != nil {
		t.Fatal(err)
	}
	if err := s.Replace(ctx, "rec", bytes.NewReader([]byte("z")), v4); !errors.Is(err, blob.ErrConflict) {
		t.Fatalf("Replace of a deleted blob: got %v, want blob.ErrConflict", err)
	}
	if _, err := s.Stat(ctx, "rec"); !errors.Is(err, blob.ErrNotExist) {
		t.Fatalf("a refused Replace created the blob: %v", err)
	}
	_, _, err = s.ReadVersion(ctx, "missing")
	wantNotExist(t, "ReadVersion", err)
}

// testReplaceConcurrent: of writers replacing the same version at once,
// exactly one wins; the others get blob.ErrConflict and the blob holds the
// winner's bytes. It is the compare-and-swap every job record change
// relies on.
func testReplaceConcurrent(t *testing.T, s pipeline.BlobStore) {
	const n = 8
	put(t, s, "cas", []byte("start"))
	for round := range 3 {
		_, v := readVersion(t, s, "cas")
		var wg sync.WaitGroup
		start := make(chan struct{})
		errs := make([]error, n)
		for i := range n {
			wg.Go(func() {
				<-start
				errs[i] = s.Replace(context.Background(), "cas", bytes.NewReader([]byte(fmt.Sprintf("round %d writer %d", round, i))), v)
			})
		}
		close(start)
		wg.Wait()
		winner := -1
		for i, err := range errs {
			switch {
			case err == nil && winner >= 0:
				t.Fatalf("round %d: writers %d and %d both replaced one version", round, winner, i)
			case err == nil:
				winner = i
			case !errors.Is(err, blob.ErrConflict):
				t.Fatalf("round %d: writer %d: %v", round, i, err)
			}
		}
		if winner < 0 {
			t.Fatalf("round %d: no writer won", round)
		}
		if got, want := string(get(t, s, "cas")), fmt.Sprintf("round %d writer %d", round, winner); got != want {
			t.Fatalf("round %d: blob = %q, want the winner's %q", round, got, want)
		}
	}
}

func testNotExist(t *testing.T, s pipeline.BlobStore) {
	ctx := context.Background()
	put(t, s, "dir/child", []byte("x"))
	for _, key := range []string{"missing", "dir/missing", "dir", "dir/child/below", "nodir/x"} {
		_, err := s.Get(ctx, key)
		wantNotExist(t, fmt.Sprintf("Get(%q)", key), err)
		_, err = s.Stat(ctx, key)
		wantNotExist(t, fmt.Sprintf("Stat(%q)", key), err)
		_, err = s.GetRange(ctx, key, 0, 10)
		wantNotExist(t, fmt.Sprintf("GetRange(%q, 0, 10)", key), err)
		_, err = s.GetRange(ctx, key, 0, -1)
		wantNotExist(t, fmt.Sprintf("GetRange(%q, 0, -1)", key), err)
		_, err = s.GetRange(ctx, key, 5, 0)
		wantNotExist(t, fmt.Sprintf("GetRange(%q, 5, 0)", key), err)
	}
}

func testGetRange(t *testing.T, s pipeline.BlobStore) {
	ctx := context.Background()
	data := []byte("0123456789abcdefghijklmnopqrstuvwxyz")
	n := int64(len(data))
	put(t, s, "r", data)
	put(t, s, "zero", nil)
	for _, c := range []struct {
		off, length int64
		want        string
	}{
		{0, 10, "0123456789"},
		{10, 5, "abcde"},
		{0, -1, string(data)},
		{30, -1, "uvwxyz"},
		{n - 3, 10, "xyz"},
		{n - 1, 1, "z"},
		{5, 0, ""},
		{n, -1, ""},
		{n, 4, ""},
		{n + 5, 10, ""},
		{n + 5, -1, ""},
	} {
		rc, err := s.GetRange(ctx, "r", c.off, c.length)
		if err != nil {
			t.Fatalf("GetRange(%d, %d): %v", c.off, c.length, err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatalf("GetRange(%d, %d): read: %v", c.off, c.length, err)
		}
		if string(got) != c.want {
			t.Errorf("GetRange(%d, %d) = %q, want %q", c.off, c.length, got, c.want)
		}
	}
	for _, c := range [][2]int64{{0, -1}, {0, 10}, {3, -1}} {
		rc, err := s.GetRange(ctx, "zero", c[0], c[1])
		if err != nil {
			t.Fatalf("GetRange(zero, %d, %d): %v", c[0], c[1], err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || len(got) != 0 {
			t.Errorf("GetRange(zero, %d, %d) = %q, %v", c[0], c[1], got, err)
		}
	}
	if _, err := s.GetRange(ctx, "r", -1, 5); err == nil || errors.Is(err, blob.ErrNotExist) {
		t.Errorf("GetRange with a negative offset: got %v, want a usage error", err)
	}

	if err := s.Put(ctx, "big", Random(5, BigSize)); err != nil {
		t.Fatalf("Put(big): %v", err)
	}
	off := int64(7*mib + 11)
	rc, err := s.GetRange(ctx, "big", off, -1)
	sum, got := digest(t, rc, err)
	want := sha256.New()
	r := Random(5, BigSize)
	_, _ = io.CopyN(io.Discard, r, off)
	_, _ = io.Copy(want, r)
	if got != BigSize-off || sum != [32]byte(want.Sum(nil)) {
		t.Errorf("GetRange(big, %d, -1) gave %d bytes (digest ok %v)", off, got, sum == [32]byte(want.Sum(nil)))
	}
}

var listKeys = []string{"b", "a/b", "a.txt", "a-b", "a0", "a/c/d", "a/c.txt", "a/b.txt", "A", "é", "~", "zz/deep/er/key"}

func testListOrder(t *testing.T, s pipeline.BlobStore) {
	for i, k := range listKeys {
		put(t, s, k, bytes.Repeat([]byte{'x'}, i))
	}
	sorted := slices.Sorted(slices.Values(listKeys))
	size := map[string]int64{}
	for i, k := range listKeys {
		size[k] = int64(i)
	}
	for _, prefix := range []string{"", "a", "a/", "a/c", "a/c/", "a.", "é", "zz/d", "zz/deep/er/key", "nomatch", "b/"} {
		var want []string
		for _, k := range sorted {
			if len(k) >= len(prefix) && k[:len(prefix)] == prefix {
				want = append(want, k)
			}
		}
		got := list(t, s, prefix)
		if !slices.Equal(keys(got), want) {
			t.Errorf("List(%q) = %q, want %q", prefix, keys(got), want)
		}
		for _, in := range got {
			if in.Size != size[in.Key] {
				t.Errorf("List(%q): %s has size %d, want %d", prefix, in.Key, in.Size, size[in.Key])
			}
		}
	}
	for _, prefix := range []string{"/", "a//", "../", "a/./", "x\\"} {
		if err := s.List(context.Background(), prefix, func(blob.Info) error { return nil }); err == nil {
			t.Errorf("List(%q) accepted an invalid prefix", prefix)
		}
	}
}

// testListPages lists more keys than fit one page of a store configured
// with a small page size.
func testListPages(t *testing.T, s pipeline.BlobStore) {
	const n = 25
	var want []string
	for i := range n {
		k := fmt.Sprintf("page/%03d", (i*7)%n) // written out of order
		put(t, s, k, []byte(k))
		want = append(want, fmt.Sprintf("page/%03d", i))
	}
	put(t, s, "pagez", nil)
	if got := keys(list(t, s, "page/")); !slices.Equal(got, want) {
		t.Fatalf("List(page/) = %q, want %q", got, want)
	}
	stop := errors.New("stop")
	calls := 0
	err := s.List(context.Background(), "page/", func(blob.Info) error {
		calls++
		if calls == 3 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || calls != 3 {
		t.Fatalf("List with fn failing on the 3rd key: err %v after %d calls", err, calls)
	}
}

func testDelete(t *testing.T, s pipeline.BlobStore) {
	ctx := context.Background()
	put(t, s, "d/x", []byte("x"))
	put(t, s, "d/y/z", []byte("z"))
	put(t, s, "k", []byte("k"))
	for range 2 {
		if err := s.Delete(ctx, "k"); err != nil {
			t.Fatalf("Delete(k): %v", err)
		}
	}
	_, err := s.Stat(ctx, "k")
	wantNotExist(t, "Stat after Delete", err)
	for _, k := range []string{"missing", "d", "d/y", "nodir/x", "d/x/below"} {
		if err := s.Delete(ctx, k); err != nil {
			t.Fatalf("Delete(%q) of a missing key: %v", k, err)
		}
	}
	if got := keys(list(t, s, "")); !slices.Equal(got, []string{"d/x", "d/y/z"}) {
		t.Fatalf("List after deleting prefixes = %q", got)
	}
	if err := s.Delete(ctx, "d/y/z"); err != nil {
		t.Fatalf("Delete(d/y/z): %v", err)
	}
	// The emptied "directory" must not get in the way of a blob named like it.
	put(t, s, "d/y", []byte("now a blob"))
	if got := string(get(t, s, "d/y")); got != "now a blob" {
		t.Fatalf("Get(d/y) = %q", got)
	}
	if got := keys(list(t, s, "")); !slices.Equal(got, []string{"d/x", "d/y"}) {
		t.Fatalf("final List = %q", got)
	}
}

func testinvalidKeys(t *testing.T, s pipeline.BlobStore) {
	ctx := context.Background()
	for _, k := range invalidKeys {
		if err := s.Put(ctx, k, bytes.NewReader([]byte("x"))); err == nil {
			t.Errorf("Put(%q) accepted an invalid key", k)
		}
		if err := s.Create(ctx, k, bytes.NewReader([]byte("x"))); err == nil {
			t.Errorf("Create(%q) accepted an invalid key", k)
		}
		if rc, err := s.Get(ctx, k); err == nil {
			rc.Close()
			t.Errorf("Get(%q) accepted an invalid key", k)
		}
		if rc, err := s.GetRange(ctx, k, 0, 1); err == nil {
			rc.Close()
			t.Errorf("GetRange(%q) accepted an invalid key", k)
		}
		if _, err := s.Stat(ctx, k); err == nil {
			t.Errorf("Stat(%q) accepted an invalid key", k)
		}
		if err := s.Delete(ctx, k); err == nil {
			t.Errorf("Delete(%q) accepted an invalid key", k)
		}
		if rc, _, err := s.ReadVersion(ctx, k); err == nil {
			rc.Close()
			t.Errorf("ReadVersion(%q) accepted an invalid key", k)
		}
		if err := s.Replace(ctx, k, bytes.NewReader([]byte("x")), "v"); err == nil {
			t.Errorf("Replace(%q) accepted an invalid key", k)
		}
		if c, ok := s.(pipeline.Composer); ok {
			if err := c.Compose(ctx, k, nil); err == nil {
				t.Errorf("Compose(dst %q) accepted an invalid key", k)
			}
			if err := c.Compose(ctx, "ok", []string{k}); err == nil {
				t.Errorf("Compose(src %q) accepted an invalid key", k)
			}
		}
	}
	if got := list(t, s, ""); len(got) != 0 {
		t.Fatalf("invalid keys left blobs behind: %+v", got)
	}
}

func testCancel(t *testing.T, s pipeline.BlobStore) {
	put(t, s, "k", []byte("x"))
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	wantCanceled := func(op string, err error) {
		t.Helper()
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a canceled ctx: got %v, want context.Canceled", op, err)
		}
	}
	wantCanceled("Put", s.Put(canceled, "p", bytes.NewReader([]byte("x"))))
	wantCanceled("Create", s.Create(canceled, "c", bytes.NewReader([]byte("x"))))
	_, err := s.Get(canceled, "k")
	wantCanceled("Get", err)
	_, err = s.GetRange(canceled, "k", 0, 1)
	wantCanceled("GetRange", err)
	_, err = s.Stat(canceled, "k")
	wantCanceled("Stat", err)
	wantCanceled("List", s.List(canceled, "", func(blob.Info) error { return nil }))
	wantCanceled("Delete", s.Delete(canceled, "k"))
	if c, ok := s.(pipeline.Composer); ok {
		wantCanceled("Compose", c.Compose(canceled, "c", []string{"k"}))
	}

	// Cancel while the body streams: no blob may appear.
	ctx, cancel := context.WithCancel(context.Background())
	r := io.MultiReader(Random(6, 6*mib), cancelReader{cancel}, Random(7, 6*mib))
	wantCanceled("Put canceled mid-stream", s.Put(ctx, "mid", r))
	_, err = s.Stat(context.Background(), "mid")
	wantNotExist(t, "Stat after canceled Put", err)

	// Cancel while reading a blob.
	if err := s.Put(context.Background(), "big", Random(8, BigSize)); err != nil {
		t.Fatalf("Put(big): %v", err)
	}
	ctx, cancel = context.WithCancel(context.Background())
	rc, err := s.Get(ctx, "big")
	if err != nil {
		t.Fatalf("Get(big): %v", err)
	}
	if _, err := io.CopyN(io.Discard, rc, 1024); err != nil {
		t.Fatalf("read: %v", err)
	}
	cancel()
	if n, err := io.Copy(io.Discard, rc); err == nil {
		t.Errorf("reading on after cancel gave %d more bytes and no error", n)
	}
	rc.Close()

	// Cancel from the List callback stops the listing.
	put(t, s, "l/1", nil)
	put(t, s, "l/2", nil)
	ctx, cancel = context.WithCancel(context.Background())
	calls := 0
	err = s.List(ctx, "l/", func(blob.Info) error { calls++; cancel(); return nil })
	wantCanceled("List canceled in fn", err)
	if calls != 1 {
		t.Errorf("List called fn %d times after cancel", calls)
	}
}

// cancelReader cancels its ctx when first read and then ends.
type cancelReader struct{ cancel context.CancelFunc }

func (c cancelReader) Read([]byte) (int, error) { c.cancel(); return 0, io.EOF }

type part struct {
	seed uint64
	size int64
}

func testCompose(t *testing.T, s pipeline.BlobStore, c pipeline.Composer) {
	ctx := context.Background()
	// Mixed sizes around S3's 5 MiB minimum part size: small parts that
	// must be merged, large ones copied whole, and large ones that top up
	// a pending small part and are copied from an offset.
	parts := []part{
		{10, 1024}, {11, 6 * mib}, {12, 100}, {13, 2 * mib}, {14, 5*mib + 1},
		{15, 0}, {16, 3 * mib}, {17, 7 * mib}, {18, 8 * mib}, {19, 1},
	}
	var srcs []string
	full := sha256.New()
	var total int64
	for i, p := range parts {
		k := fmt.Sprintf("src/%02d", i)
		if err := s.Put(ctx, k, Random(p.seed, p.size)); err != nil {
			t.Fatalf("Put(%s): %v", k, err)
		}
		_, _ = io.Copy(full, Random(p.seed, p.size))
		total += p.size
		srcs = append(srcs, k)
	}
	if err := c.Compose(ctx, "out/all", srcs); err != nil {
		t.Fatalf("Compose: %v", err)
	}
	rc, err := s.Get(ctx, "out/all")
	if sum, n := digest(t, rc, err); n != total || sum != [32]byte(full.Sum(nil)) {
		t.Fatalf("composed blob has %d bytes, want %d (digest ok %v)", n, total, sum == [32]byte(full.Sum(nil)))
	}

	cases := []struct {
		name string
		srcs []string
		want []part
	}{
		{"none", nil, nil},
		{"one small", []string{"src/00"}, parts[:1]},
		{"one large", []string{"src/01"}, parts[1:2]},
		{"large then small", []string{"src/08", "src/00"}, []part{parts[8], parts[0]}},
		{"only empty", []string{"src/05", "src/05"}, nil},
		{"repeated", []string{"src/02", "src/01", "src/02"}, []part{parts[2], parts[1], parts[2]}},
	}
	for _, tc := range cases {
		if err := c.Compose(ctx, "out/case", tc.srcs); err != nil {
			t.Fatalf("Compose %s: %v", tc.name, err)
		}
		want := sha256.New()
		var n int64
		for _, p := range tc.want {
			_, _ = io.Copy(want, Random(p.seed, p.size))
			n += p.size
		}
		rc, err := s.Get(ctx, "out/case")
		if sum, got := digest(t, rc, err); got != n || sum != [32]byte(want.Sum(nil)) {
			t.Fatalf("Compose %s: got %d bytes, want %d (digest ok %v)", tc.name, got, n, sum == [32]byte(want.Sum(nil)))
		}
	}

	// Keys that need escaping in a copy source header.
	oddSrc := []string{"odd/ +%#?&=é🙂 big", "odd/#small?+", "odd/a%2Fb/100%"}
	oddParts := []part{{20, 6 * mib}, {21, 10}, {22, 5*mib + 7}}
	oddWant := sha256.New()
	var oddTotal int64
	for i, k := range oddSrc {
		if err := s.Put(ctx, k, Random(oddParts[i].seed, oddParts[i].size)); err != nil {
			t.Fatalf("Put(%q): %v", k, err)
		}
		_, _ = io.Copy(oddWant, Random(oddParts[i].seed, oddParts[i].size))
		oddTotal += oddParts[i].size
	}
	if err := c.Compose(ctx, "odd/dst +%#?", oddSrc); err != nil {
		t.Fatalf("Compose with odd keys: %v", err)
	}
	rc, err = s.Get(ctx, "odd/dst +%#?")
	if sum, n := digest(t, rc, err); n != oddTotal || sum != [32]byte(oddWant.Sum(nil)) {
		t.Fatalf("Compose with odd keys: %d bytes, want %d (digest ok %v)", n, oddTotal, sum == [32]byte(oddWant.Sum(nil)))
	}

	// dst may be one of its sources.
	put(t, s, "self", []byte("head-"))
	put(t, s, "tail", []byte("tail"))
	if err := c.Compose(ctx, "self", []string{"self", "tail", "self"}); err != nil {
		t.Fatalf("Compose into a source: %v", err)
	}
	if got := string(get(t, s, "self")); got != "head-tailhead-" {
		t.Fatalf("Compose into a source = %q", got)
	}

	// A missing source fails the whole compose and leaves dst untouched.
	put(t, s, "keep", []byte("unchanged"))
	err = c.Compose(ctx, "keep", []string{"src/00", "missing", "src/02"})
	wantNotExist(t, "Compose with a missing source", err)
	if got := string(get(t, s, "keep")); got != "unchanged" {
		t.Fatalf("failed Compose changed dst to %q", got)
	}
	err = c.Compose(ctx, "fresh", []string{"src/01", "missing"})
	wantNotExist(t, "Compose with a missing source", err)
	_, err = s.Stat(ctx, "fresh")
	wantNotExist(t, "Stat of a failed Compose's dst", err)
}
