package conformance

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"golang.org/x/sync/errgroup"

	"github.com/edgevault/edgevault/pkg/edgebase"
	"github.com/edgevault/edgevault/pkg/edgebase/edgebasetest"
	"github.com/edgevault/edgevault/pkg/r2"
	"github.com/edgevault/edgevault/pkg/sensitive"
)

// The peer keeps its storage in Miniflare's on-disk store, which has no
// S3 API, so R2's role is played by an in-process S3 server (gofakes3, in
// memory, on 127.0.0.1), as in the benchmark: for a backup it holds the
// source peer's objects (bytes and real content types), for a restore it
// stands in for the target's bucket.

const (
	standInBucket = "edgebase-storage"
	standInKeyID  = "conformance-r2-key"
	standInSecret = "conformance-r2-secret"
)

type standIn struct {
	be  *s3mem.Backend
	url string
}

func newStandIn(t *testing.T) *standIn {
	t.Helper()
	be := s3mem.New()
	if err := be.CreateBucket(standInBucket); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gofakes3.New(be, gofakes3.WithoutVersioning()).Server())
	t.Cleanup(srv.Close)
	return &standIn{be: be, url: srv.URL}
}

// flags are edgevault's R2-direct flags for the stand-in.
func (s *standIn) flags() []string {
	return []string{"--r2-endpoint", s.url, "--r2-bucket", standInBucket, "--r2-access-key-id", standInKeyID, "--r2-secret-access-key", standInSecret}
}

func (s *standIn) put(t *testing.T, key, contentType string, data []byte) {
	t.Helper()
	if _, err := s.be.PutObject(standInBucket, key, map[string]string{"Content-Type": contentType}, strings.NewReader(string(data)), int64(len(data)), nil); err != nil {
		t.Fatal(err)
	}
}

// copyFrom fills the stand-in with every object of a peer, read through
// the admin API with the type the peer stored.
func (s *standIn) copyFrom(ctx context.Context, t *testing.T, src *server) int {
	t.Helper()
	c, err := edgebase.New(edgebase.Options{BaseURL: src.URL, ServiceKey: sensitive.String(src.Key), HTTPClient: httpClient})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	if _, err := c.ListStorage(ctx, func(o edgebase.Object) error { keys = append(keys, o.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		err := c.GetObject(ctx, k, func(r io.Reader, info edgebase.ObjectInfo) error {
			b, err := io.ReadAll(r)
			if err == nil {
				s.put(t, k, info.ContentType, b)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return len(keys)
}

// objectLines renders the stand-in's objects as a fingerprint's object
// lines (key, size, sha256, content type), sorted.
func (s *standIn) objectLines(ctx context.Context, t *testing.T) []string {
	t.Helper()
	st, err := r2.New(r2.Config{Endpoint: s.url, Bucket: standInBucket, AccessKeyID: standInKeyID, SecretAccessKey: sensitive.String(standInSecret)})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var lines []string
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	err = st.ListPages(ctx, "", "", 0, func(page []edgebase.Object) error {
		for _, o := range page {
			g.Go(func() error {
				return st.GetObject(gctx, o.Key, func(r io.Reader, info edgebase.ObjectInfo) error {
					h := sha256.New()
					n, err := io.Copy(h, r)
					mu.Lock()
					lines = append(lines, fmt.Sprintf("object %s %d %s %s", strconv.Quote(o.Key), n, hex.EncodeToString(h.Sum(nil)), strconv.Quote(info.ContentType)))
					mu.Unlock()
					return err
				})
			})
		}
		return nil
	})
	if werr := g.Wait(); err == nil {
		err = werr
	}
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(lines)
	return lines
}

// split separates a fingerprint's object lines (sorted) from its users
// and table lines.
func split(fp *edgebasetest.Fingerprint) (db, objects []string) {
	for _, l := range fp.Lines {
		switch {
		case strings.HasPrefix(l, "object "):
			objects = append(objects, l)
		case !strings.HasPrefix(l, "storage "):
			db = append(db, l)
		}
	}
	slices.Sort(objects)
	return db, objects
}

// storageCounts reads the storage counts of edgevault's restore report.
func storageCounts(r cliRun) (uploaded, skipped, deleted int64) {
	st, _ := r.doc["storage"].(map[string]any)
	return number(st, "uploaded"), number(st, "skipped"), number(st, "deleted")
}

// r2DirectInterop: an archive whose storage edgevault read through R2
// direct is restored by the official CLI through the Worker, and an
// archive edgevault wrote through the admin API is restored with storage
// through R2 direct (into a stand-in for the target's bucket, holding a
// stale object and an unchanged one); then again, when every object is
// found unchanged (the peer's etags equal the stand-in's MD5s), and
// rolled back into the source itself through the admin API.
func r2DirectInterop(ctx context.Context, t *testing.T, src, dst *server, want *edgebasetest.Fingerprint) {
	wantDB, wantObjs := split(want)
	t.Run("edgevault-r2-create-tgz/official-restore", func(t *testing.T) {
		mirror := newStandIn(t)
		n := mirror.copyFrom(ctx, t, src)
		if n != len(wantObjs) {
			t.Fatalf("copied %d objects, the source holds %d", n, len(wantObjs))
		}
		file := src.create(ctx, t, true, false, mirror.flags()...)
		dst.dirty(ctx, t, "r2a", false)
		dst.officialRestore(ctx, t, file)
		assertSameFP(t, "target after the official restore of an R2-direct archive", want, dst.fingerprint(ctx, t, nil))
	})
	t.Run("edgevault-create-tgz/edgevault-r2-restore", func(t *testing.T) {
		file := src.create(ctx, t, true, false)
		target := newStandIn(t)
		target.put(t, "uploads/stale/not-in-the-archive.txt", "text/plain", []byte("stale"))
		for _, o := range portableObjects[:1] {
			target.put(t, o.bucket+"/"+o.key, o.contentType, o.data)
		}
		dst.dirty(ctx, t, "r2b", false)
		r := dst.restore(ctx, t, file, false, target.flags()...)
		up, skip, del := storageCounts(r)
		if up != int64(len(wantObjs)-1) || skip != 1 || del != 1 {
			t.Errorf("R2-direct restore: %d uploaded, %d skipped, %d deleted; want %d, 1, 1", up, skip, del, len(wantObjs)-1)
		}
		gotDB, _ := split(dst.fingerprint(ctx, t, nil))
		if !slices.Equal(gotDB, wantDB) {
			t.Errorf("the target's database differs from the source's:\n%s", edgebasetest.Diff(&edgebasetest.Fingerprint{Lines: wantDB}, &edgebasetest.Fingerprint{Lines: gotDB}))
		}
		if got := target.objectLines(ctx, t); !slices.Equal(got, wantObjs) {
			t.Errorf("the target's bucket holds\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(wantObjs, "\n"))
		}

		r = dst.restore(ctx, t, file, false, target.flags()...)
		if up, skip, del := storageCounts(r); up != 0 || skip != int64(len(wantObjs)) || del != 0 {
			t.Errorf("R2-direct restore into an unchanged bucket: %d uploaded, %d skipped, %d deleted; want 0, %d, 0", up, skip, del, len(wantObjs))
		}
		if got := target.objectLines(ctx, t); !slices.Equal(got, wantObjs) {
			t.Errorf("after the second restore the target's bucket holds\n%s", strings.Join(got, "\n"))
		}
	})
	t.Run("edgevault-create-tgz/edgevault-rollback", func(t *testing.T) {
		file := src.create(ctx, t, true, false)
		r := src.restore(ctx, t, file, false)
		if up, skip, del := storageCounts(r); up != 0 || skip != int64(len(wantObjs)) || del != 0 {
			t.Errorf("rollback of an unchanged source: %d uploaded, %d skipped, %d deleted; want 0, %d, 0", up, skip, del, len(wantObjs))
		}
		assertSameFP(t, "source after its own rollback", want, src.fingerprint(ctx, t, nil))
	})
}
