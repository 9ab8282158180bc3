package r2_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/edgevault/edgevault/pkg/edgebase"
	"github.com/edgevault/edgevault/pkg/edgebase/edgebasetest"
	"github.com/edgevault/edgevault/pkg/pipeline"
	"github.com/edgevault/edgevault/pkg/r2"
	"github.com/edgevault/edgevault/pkg/sensitive"
)

// newStore starts an emulator with its S3 endpoint and an R2-direct
// store on it.
func newStore(t *testing.T, opts edgebasetest.Options, mod func(*r2.Config)) (*edgebasetest.Emulator, *r2.Store, *edgebasetest.S3Stats, func(int64)) {
	t.Helper()
	e := edgebasetest.NewTest(t, opts)
	url, stats, throttle := e.ServeS3(t)
	cfg := r2.Config{Endpoint: url, Bucket: e.S3Bucket(), AccessKeyID: edgebasetest.S3AccessKeyID,
		SecretAccessKey: sensitive.String(edgebasetest.S3SecretAccessKey)}
	if mod != nil {
		mod(&cfg)
	}
	s, err := r2.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e, s, stats, throttle
}

func TestConfig(t *testing.T) {
	err := r2.Config{AccountID: "nothex"}.Validate()
	for _, want := range []string{"--r2-account-id", "--r2-bucket", "R2_ACCESS_KEY_ID", "R2_SECRET_ACCESS_KEY"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to name %s", err, want)
		}
	}
	c := r2.Config{}
	env := map[string]string{"R2_ACCOUNT_ID": strings.Repeat("ab", 16), "R2_BUCKET": "b", "R2_ACCESS_KEY_ID": "id", "R2_SECRET_ACCESS_KEY": "topsecret"}
	c.ApplyEnv(func(k string) string { return env[k] })
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if got, want := c.EndpointURL(), "https://"+strings.Repeat("ab", 16)+".r2.cloudflarestorage.com"; got != want {
		t.Errorf("EndpointURL() = %s, want %s", got, want)
	}
	if s := fmt.Sprintf("%v %+v %#v", c, c, c); strings.Contains(s, "topsecret") {
		t.Errorf("the secret is printed: %s", s)
	}
	if (r2.Config{AccessKeyID: "id", SecretAccessKey: "s"}).Enabled() || !c.Enabled() {
		t.Error("Enabled() is wrong")
	}
}

func TestListPagesGetPutDelete(t *testing.T) {
	ctx := context.Background()
	e, s, stats, _ := newStore(t, edgebasetest.Options{}, nil)
	var objs []edgebasetest.Object
	for i := range 25 {
		objs = append(objs, edgebasetest.Object{Key: fmt.Sprintf("files/k%03d", i), ContentType: "text/plain", Data: []byte(strings.Repeat("x", i))})
	}
	if err := e.AddObjects(ctx, objs...); err != nil {
		t.Fatal(err)
	}
	var pages, n int
	err := s.ListPages(ctx, "files/k004", "files/k020", 7, func(p []edgebase.Object) error {
		pages++
		for _, o := range p {
			want := fmt.Sprintf("files/k%03d", 5+n)
			if o.Key != want || o.Size != int64(5+n) || len(o.ETag) != 32 {
				t.Errorf("object %d = %+v, want key %s", n, o, want)
			}
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != 16 || pages != 3 {
		t.Errorf("listed %d objects in %d pages, want 16 in 3", n, pages)
	}
	if m := stats.MaxListKeys.Load(); m > 7 {
		t.Errorf("a list reply held %d keys, page size 7", m)
	}

	body := []byte("<svg xmlns='http://www.w3.org/2000/svg'/>")
	err = s.PutObject(ctx, "img/a.svg", "image/svg+xml", int64(len(body)), func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(body)), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// One set of objects: the admin API sees what the S3 API wrote.
	data, ct, err := e.ObjectContent(ctx, "img/a.svg")
	if err != nil || !bytes.Equal(data, body) || ct != "image/svg+xml" {
		t.Fatalf("through the emulator: %q %q %v", data, ct, err)
	}
	err = s.GetObject(ctx, "img/a.svg", func(r io.Reader, info edgebase.ObjectInfo) error {
		got, err := io.ReadAll(r)
		if !bytes.Equal(got, body) || info.ContentType != "image/svg+xml" || info.Size != int64(len(body)) || info.ETag == "" {
			t.Errorf("get: %q %+v", got, info)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteObjects(ctx, []string{"img/a.svg", "files/k000", "never/there"}); err != nil {
		t.Fatal(err)
	}
	err = s.GetObject(ctx, "img/a.svg", func(io.Reader, edgebase.ObjectInfo) error { return nil })
	if !errors.Is(err, edgebase.ErrNotFound) {
		t.Errorf("get after delete = %v, want ErrNotFound", err)
	}
}

func TestRefusedSettingsAreNamed(t *testing.T) {
	ctx := context.Background()
	list := func(s *r2.Store) error {
		return s.ListPages(ctx, "", "", 0, func([]edgebase.Object) error { return nil })
	}
	t.Run("credentials", func(t *testing.T) {
		_, s, _, _ := newStore(t, edgebasetest.Options{}, func(c *r2.Config) { c.AccessKeyID = "wrong" })
		err := list(s)
		if !errors.Is(err, r2.ErrCredentials) || !pipeline.IsPermanent(err) || !strings.Contains(err.Error(), "R2_ACCESS_KEY_ID") {
			t.Errorf("err = %v", err)
		}
		if strings.Contains(err.Error(), edgebasetest.S3SecretAccessKey) {
			t.Error("the secret is in the error")
		}
	})
	t.Run("bucket", func(t *testing.T) {
		_, s, _, _ := newStore(t, edgebasetest.Options{}, func(c *r2.Config) { c.Bucket = "nope" })
		err := list(s)
		if !errors.Is(err, r2.ErrNoBucket) || !pipeline.IsPermanent(err) || !strings.Contains(err.Error(), "--r2-bucket") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("throttled", func(t *testing.T) {
		_, s, stats, throttle := newStore(t, edgebasetest.Options{}, func(c *r2.Config) { c.MaxAttempts = 3 })
		throttle(2) // fewer than the attempts: the retries absorb it
		if err := list(s); err != nil {
			t.Fatalf("two SlowDowns then success: %v", err)
		}
		throttle(100)
		before := stats.Requests.Load()
		err := list(s)
		if !errors.Is(err, r2.ErrThrottled) || pipeline.IsPermanent(err) || !strings.Contains(err.Error(), "--r2-endpoint") {
			t.Errorf("err = %v", err)
		}
		if n := stats.Requests.Load() - before; n != 3 {
			t.Errorf("%d requests, want 3 (bounded retries)", n)
		}
	})
}

// Profile05 masks HTML/SVG/JSON on the admin API; R2 direct reads the
// stored types.
func TestTypesUnmasked(t *testing.T) {
	ctx := context.Background()
	e, s, _, _ := newStore(t, edgebasetest.Options{Profile: edgebasetest.Profile05}, nil)
	types := map[string]string{"p/a.html": "text/html", "p/b.svg": "image/svg+xml", "p/c.json": "application/json"}
	for k, ct := range types {
		if err := e.AddObjects(ctx, edgebasetest.Object{Key: k, ContentType: ct, Data: []byte("{}")}); err != nil {
			t.Fatal(err)
		}
	}
	c, err := edgebase.New(edgebase.Options{BaseURL: e.URL(), ServiceKey: sensitive.String(e.ServiceKey())})
	if err != nil {
		t.Fatal(err)
	}
	for k, ct := range types {
		err := c.GetObject(ctx, k, func(_ io.Reader, info edgebase.ObjectInfo) error {
			if !info.Masked {
				t.Errorf("admin API: %s not masked (%+v)", k, info)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		err = s.GetObject(ctx, k, func(_ io.Reader, info edgebase.ObjectInfo) error {
			if info.ContentType != ct || info.Masked {
				t.Errorf("R2 direct: %s type %q, want %q", k, info.ContentType, ct)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// corruptGets flips the last byte of every GET body that it passes on.
type corruptGets struct{ h http.Handler }

func (c corruptGets) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet || r.URL.Query().Has("list-type") {
		c.h.ServeHTTP(w, r)
		return
	}
	rec := httptest.NewRecorder()
	c.h.ServeHTTP(rec, r)
	body := rec.Body.Bytes()
	if len(body) > 0 {
		body[len(body)-1] ^= 1
	}
	maps.Copy(w.Header(), rec.Header())
	w.WriteHeader(rec.Code)
	_, _ = w.Write(body)
}

// A body that does not match its ETag fails the read: it never passes
// for the object.
func TestCorruptBodyFails(t *testing.T) {
	ctx := context.Background()
	e := edgebasetest.NewTest(t, edgebasetest.Options{})
	if err := e.AddObjects(ctx, edgebasetest.Object{Key: "a/b.txt", ContentType: "text/plain", Data: []byte("hello")}); err != nil {
		t.Fatal(err)
	}
	h, _, _ := e.S3()
	srv := httptest.NewServer(corruptGets{h})
	defer srv.Close()
	s, err := r2.New(r2.Config{Endpoint: srv.URL, Bucket: e.S3Bucket(), AccessKeyID: edgebasetest.S3AccessKeyID,
		SecretAccessKey: sensitive.String(edgebasetest.S3SecretAccessKey)})
	if err != nil {
		t.Fatal(err)
	}
	err = s.GetObject(ctx, "a/b.txt", func(r io.Reader, _ edgebase.ObjectInfo) error {
		_, err := io.ReadAll(r)
		return err
	})
	if !errors.Is(err, r2.ErrCorrupt) {
		t.Errorf("err = %v, want ErrCorrupt", err)
	}
}
