package main

// R2 direct on the real peer: the peer keeps its storage in Miniflare's
// on-disk store, which has no S3 API, so R2's role is played by an
// in-process S3 server (gofakes3, in memory) holding the same objects as
// the peer (seed-bench.sh's keys, bytes and types: edgebasetest.BenchObject).
// edgevault then backs up the database parts from the peer and storage
// from that server ("edgevault-r2"), beside the official CLI through the
// Worker. "r2-floor" is the raw floor against the same server: the same
// listing and parallel GETs through the same adapter, bodies discarded.
// The restore row ("edgevault-r2", op restore) works the same way the
// other way round: edgevault restores its R2-direct archive with the
// database parts into the target peer and storage into a second stand-in,
// empty at first, for the target's bucket.
// The servers live in peerbench's process, so their memory is not counted
// in edgevault's peak RSS.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"golang.org/x/sync/errgroup"

	"github.com/edgevault/edgevault/internal/benchtools/r2floor"
	"github.com/edgevault/edgevault/pkg/edgebase"
	"github.com/edgevault/edgevault/pkg/edgebase/edgebasetest"
	"github.com/edgevault/edgevault/pkg/r2"
	"github.com/edgevault/edgevault/pkg/sensitive"
)

// Bucket and credentials of the stand-in (it checks none).
const (
	mirrorBucket = "edgebase-storage"
	mirrorKeyID  = "bench-r2-key"
	mirrorSecret = "bench-r2-secret"
)

// r2Mirror is the stand-in for the peer's R2 bucket.
type r2Mirror struct {
	backend *s3mem.Backend
	srv     *http.Server
	url     string
}

func startR2Mirror() (*r2Mirror, error) {
	be := s3mem.New()
	if err := be.CreateBucket(mirrorBucket); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	m := &r2Mirror{backend: be, url: "http://" + ln.Addr().String(),
		srv: &http.Server{Handler: gofakes3.New(be, gofakes3.WithoutVersioning()).Server(), ReadHeaderTimeout: 30 * time.Second}}
	go func() { _ = m.srv.Serve(ln) }()
	return m, nil
}

func (m *r2Mirror) close() error { return m.srv.Close() }

// fill stores bench objects from..to (seed-bench.sh's numbering).
func (m *r2Mirror) fill(from, to int) error {
	for i := from; i <= to; i++ {
		o := edgebasetest.BenchObject(i)
		_, err := m.backend.PutObject(mirrorBucket, o.Key, map[string]string{"Content-Type": o.ContentType},
			edgebasetest.GeneratedContent(o.Seed, o.Size), o.Size, nil)
		if err != nil {
			return fmt.Errorf("r2 mirror: put %s: %w", o.Key, err)
		}
	}
	return nil
}

// args are edgevault's R2-direct flags and environment.
func (m *r2Mirror) args() (flags, env []string) {
	return []string{"--r2-endpoint", m.url, "--r2-bucket", mirrorBucket},
		[]string{"R2_ACCESS_KEY_ID=" + mirrorKeyID, "R2_SECRET_ACCESS_KEY=" + mirrorSecret}
}

// floor lists the bucket and GETs every object with inFlight requests in
// flight, discarding the bodies, and returns the wall time in seconds.
func (m *r2Mirror) floor(ctx context.Context, inFlight int) (secs float64, objects, bytes int64, err error) {
	s, err := r2.New(r2.Config{Endpoint: m.url, Bucket: mirrorBucket, AccessKeyID: mirrorKeyID, SecretAccessKey: sensitive.String(mirrorSecret)})
	if err != nil {
		return 0, 0, 0, err
	}
	start := time.Now()
	objects, bytes, err = r2floor.Read(ctx, s, inFlight)
	return time.Since(start).Seconds(), objects, bytes, err
}

// createR2 runs the R2-direct tools: "edgevault-r2" as its own process
// like every tool, "r2-floor" in-process.
func (b *bench) createR2(ctx context.Context, tool string, src *target, out string) (toolRun, error) {
	r := toolRun{tool: tool}
	if tool == "r2-floor" {
		secs, _, _, err := b.r2.floor(ctx, 2*b.cfg.concurrency)
		r.m = measure{wall: secs, load: load1()}
		if err != nil {
			r.m.rc, r.m.errOut = 1, err.Error()
		}
		r.wall = secs
		return r, nil
	}
	flags, env := b.r2.args()
	args := append([]string{"--json", "backup", "create", "--url", src.URL, "--service-key", src.Key, "--output", out,
		"--concurrency", fmt.Sprint(b.cfg.concurrency), "--include-storage"}, flags...)
	m, err := b.timedOn(ctx, src, out, environ(env...), b.cfg.edgevault, args...)
	r.m, r.wall = m, m.wall
	return r, err
}

// objectLines reads every object of the stand-in through the adapter and
// renders it as the fingerprint does (edgebasetest.Fingerprint's object
// lines: key, size, sha256, content type), sorted.
func (m *r2Mirror) objectLines(ctx context.Context) ([]string, error) {
	s, err := r2.New(r2.Config{Endpoint: m.url, Bucket: mirrorBucket, AccessKeyID: mirrorKeyID, SecretAccessKey: sensitive.String(mirrorSecret)})
	if err != nil {
		return nil, err
	}
	var mu sync.Mutex
	var lines []string
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(9)
	g.Go(func() error {
		return s.ListPages(gctx, "", "", 0, func(page []edgebase.Object) error {
			for _, o := range page {
				g.Go(func() error {
					return s.GetObject(gctx, o.Key, func(r io.Reader, info edgebase.ObjectInfo) error {
						h := sha256.New()
						n, err := io.Copy(h, r)
						if err != nil {
							return err
						}
						mu.Lock()
						lines = append(lines, fmt.Sprintf("object %s %d %s %s", strconv.Quote(o.Key), n, hex.EncodeToString(h.Sum(nil)), strconv.Quote(info.ContentType)))
						mu.Unlock()
						return nil
					})
				})
			}
			return nil
		})
	})
	if err := g.Wait(); err != nil {
		return nil, err
	}
	sort.Strings(lines)
	return lines, nil
}

// restoreR2 runs edgevault's restore of archive with the database parts
// into dst and storage through R2 direct into the target's stand-in,
// uploading every object like the official CLI (--full-storage-restore).
func (b *bench) restoreR2(ctx context.Context, dst *target, archive string) (toolRun, error) {
	flags, env := b.r2dst.args()
	args := append([]string{"--json", "backup", "restore", "--from", archive, "--yes", "--url", dst.URL, "--service-key", dst.Key,
		"--concurrency", fmt.Sprint(b.cfg.concurrency), "--storage-concurrency", fmt.Sprint(2 * b.cfg.concurrency), "--full-storage-restore"}, flags...)
	m, err := b.timedOn(ctx, dst, filepath.Dir(archive), environ(env...), b.cfg.edgevault, args...)
	return toolRun{tool: "edgevault-r2", m: m, wall: m.wall}, err
}

// verifyR2Restore compares the target's stand-in's objects and the target
// peer's database part with the source's fingerprint.
func (b *bench) verifyR2Restore(ctx context.Context, want *edgebasetest.Fingerprint, dst *target) (string, error) {
	got, err := b.fingerprint(ctx, dst)
	if err != nil {
		return "", err
	}
	var wantObjs, wantDB, gotDB []string
	for _, l := range want.Lines {
		switch {
		case strings.HasPrefix(l, "object "):
			wantObjs = append(wantObjs, l)
		case !strings.HasPrefix(l, "storage "):
			wantDB = append(wantDB, l)
		}
	}
	for _, l := range got.Lines {
		if !strings.HasPrefix(l, "object ") && !strings.HasPrefix(l, "storage ") {
			gotDB = append(gotDB, l)
		}
	}
	objs, err := b.r2dst.objectLines(ctx)
	if err != nil {
		return "", err
	}
	sort.Strings(wantObjs)
	verified := "yes"
	if !slices.Equal(objs, wantObjs) {
		verified = "no"
		b.logf("edgevault-r2 restore: the stand-in holds %d objects, the source %d, and they differ", len(objs), len(wantObjs))
	}
	if !slices.Equal(gotDB, wantDB) {
		verified = "no"
		b.logf("edgevault-r2 restore: the target's database differs from the source's")
	}
	return verified, nil
}
