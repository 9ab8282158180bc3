package conformance

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgevault/edgevault/pkg/edgebase/edgebasetest"
)

type object struct {
	bucket, key, contentType string
	data                     []byte
}

// portableObjects have keys that are plain relative file paths, which both
// the official CLI and edgevault store as storage/<bucket>/<key>.
var portableObjects = []object{
	{"uploads", "dir with space/file name.txt", "text/plain; charset=utf-8", []byte("spaces in the key\n")},
	{"uploads", "100%.bin", "application/x-percent", []byte("100% sure")},
	{"uploads", "hash#tag", "image/png", []byte("\x89PNG\r\n\x1a\n not really")},
	{"uploads", "q?x=1&y=2", "text/csv", []byte("a,b\n1,2\n")},
	{"uploads", "plus+eq=comma,semi;amp&", "application/json", []byte(`{"ok":true}`)},
	{"avatars", "a/b/c/d/e/f/g/h/i/j/k/deep.txt", "text/plain", []byte("deep")},
	{"avatars", "unicode/日本語/ñandú 😀.txt", "text/plain; charset=utf-8", []byte("ünïcødé")},
	{"avatars", strings.Repeat("L", 120) + "/" + strings.Repeat("m", 120) + "/long-key-past-the-ustar-limits.txt", "text/x-long", []byte("long")},
	{"avatars", "empty.bin", "application/x-empty", nil},
	{"avatars", "one.bin", "application/x-one", []byte{0xff}},
	{"avatars", "binary/all-bytes.bin", "application/octet-stream", allBytes()},
}

// unsafeObjects have legal R2 keys (the server accepts them) that are not
// plain relative paths: a tar member of that name would be a directory,
// collapse a segment, or be absolute. The official create fails on the
// first one ("EISDIR"); edgevault stores them escaped. A key with a dot
// segment ("./x") is left out: the public storage API cannot address it
// (the server normalises the path), so no fingerprint could read it back.
var unsafeObjects = []object{
	{"uploads", "trailing/", "text/x-dir", []byte("a key ending in a slash")},
	{"uploads", "a//double", "text/plain", []byte("double slash")},
	{"uploads", "/leading", "text/plain", []byte("leading slash")},
	{"uploads", `back\slash`, "text/plain", []byte("backslash")},
}

func allBytes() []byte {
	b := make([]byte, 256)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}

func (s *server) uploadAll(ctx context.Context, objs []object) error {
	for _, o := range objs {
		if err := s.upload(ctx, o.bucket, o.key, o.contentType, o.data); err != nil {
			return err
		}
	}
	return nil
}

// seedBase seeds the data of the peer's seed.sh (users, posts, tags,
// ledger entries, instances, small text files) through the public API.
func (s *server) seedBase(ctx context.Context, t *testing.T, users, instances, files int) {
	t.Helper()
	start := time.Now()
	if err := edgebasetest.SeedHTTP(ctx, httpClient, s.URL, s.Key, edgebasetest.HTTPSeed{Users: users, Instances: instances, Files: files}); err != nil {
		t.Fatalf("seed %s: %v", s.name, err)
	}
	t.Logf("seeded %s: %d users, %d instances, %d files in %s", s.name, users, instances, files, time.Since(start).Round(time.Millisecond))
}

// seedValues adds rows with values that are easy to get wrong: NULLs,
// integers past 2^53 and 2^31, tiny and huge floats, unicode with control
// characters, quotes and backslashes.
func (s *server) seedValues(ctx context.Context, t *testing.T) {
	t.Helper()
	posts := []map[string]any{
		{"title": "null body", "body": nil},
		{"title": "ünïcødé 😀 \u0000 nul, \t tab, \"quotes\", \\ backslash", "body": "line1\nline2\r\n\u2028"},
		{"title": "number-like text", "body": "9007199254740993"},
		{"title": strings.Repeat("long title ", 500)},
	}
	for _, p := range posts {
		if _, err := s.postJSON(ctx, "/api/db/shared/tables/posts", p, http.StatusCreated); err != nil {
			t.Fatal(err)
		}
	}
	entries := []map[string]any{
		{"amount": 9007199254740993, "memo": "2^53+1 (the server keeps it as a double)"},
		{"amount": -9007199254740991, "memo": "-(2^53-1)"},
		{"amount": 2147483648, "memo": "2^31"},
		{"amount": 1e21, "memo": "1e21"},
		{"amount": -0.0000015, "memo": "tiny"},
		{"amount": nil, "memo": nil},
	}
	for _, e := range entries {
		if _, err := s.postJSON(ctx, "/api/db/ledger/tables/entries", e, http.StatusCreated); err != nil {
			t.Fatal(err)
		}
	}
}

// blobDO is the instance that holds BLOB values. The public API cannot
// create BLOBs (its schema validation refuses anything but the declared
// types), so they are written with the admin restore-do's blob wrapper,
// the only way a client can store one.
const blobDO = "workspace:blobs"

func (s *server) seedBlobs(ctx context.Context, t *testing.T) {
	t.Helper()
	// Create the instance first (canCreate runs on a public read), else
	// restore-do answers needsCreate.
	if _, err := s.call(ctx, http.MethodGet, "/api/db/workspace/blobs/tables/tasks?limit=1", "", nil, http.StatusOK); err != nil {
		t.Fatal(err)
	}
	ts := "2026-01-01T00:00:00.000Z"
	blob := func(b []byte) map[string]any {
		return map[string]any{"__blob__": true, "data": base64.StdEncoding.EncodeToString(b)}
	}
	rows := []map[string]any{
		{"id": "blob-in-text", "createdAt": ts, "updatedAt": ts, "title": blob([]byte{0, 1, 2, 0xfe, 0xff}), "done": 0},
		{"id": "blob-in-integer", "createdAt": ts, "updatedAt": ts, "title": "t", "done": blob(allBytes())},
		{"id": "empty-blob", "createdAt": ts, "updatedAt": ts, "title": blob(nil), "done": nil},
		{"id": "plain", "createdAt": ts, "updatedAt": ts, "title": "no blob", "done": 1},
	}
	if _, err := s.postJSON(ctx, "/admin/api/backup/restore-do", map[string]any{
		"doName": blobDO, "type": "database", "tables": map[string]any{"tasks": rows},
	}, http.StatusOK); err != nil {
		t.Fatal(err)
	}
	// And a D1 BLOB: restore-data stores an array of byte values as a BLOB
	// (and dump-data returns it as one), so add one to shared.tags.
	tables, err := s.dumpData(ctx, "shared")
	if err != nil {
		t.Fatal(err)
	}
	tags := tables["tags"]
	tags = append(tags, map[string]any{"id": "blob-tag", "createdAt": ts, "updatedAt": ts, "name": []int{0, 1, 2, 253, 254, 255}})
	tables["tags"] = tags
	if _, err := s.postJSON(ctx, "/admin/api/backup/restore-data", map[string]any{"namespace": "shared", "tables": tables}, http.StatusOK); err != nil {
		t.Fatal(err)
	}
}

// seedBig fills one instance DO with n rows through the batch API (500
// rows per request, the server's maximum), 4 requests at a time.
func (s *server) seedBig(ctx context.Context, t *testing.T, instance string, n int) {
	t.Helper()
	const batch = 500
	start := time.Now()
	path := "/api/db/workspace/" + url.PathEscape(instance) + "/tables/tasks/batch"
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf bytes.Buffer
			for {
				i := int(next.Add(batch)) - batch
				if i >= n || ctx.Err() != nil {
					return
				}
				buf.Reset()
				buf.WriteString(`{"inserts":[`)
				for j := i; j < min(i+batch, n); j++ {
					if j > i {
						buf.WriteByte(',')
					}
					fmt.Fprintf(&buf, `{"title":"row %07d %x","done":%t}`, j, sha256.Sum256([]byte{byte(j), byte(j >> 8), byte(j >> 16)}), j%3 == 0)
				}
				buf.WriteString(`]}`)
				if _, err := s.call(ctx, http.MethodPost, path, "application/json", bytes.NewReader(buf.Bytes()), http.StatusOK); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		t.Fatalf("seed %d rows into workspace:%s: %v", n, instance, err)
	}
	t.Logf("seeded %d rows into workspace:%s in %s", n, instance, time.Since(start).Round(time.Millisecond))
}

// dirty makes s differ from any backup: a new user, post and ledger entry,
// an extra object and, when instances is set, an extra instance DO (an
// orphan for the next restore to wipe). Returns the extra instance.
func (s *server) dirty(ctx context.Context, t *testing.T, tag string, instances bool) string {
	t.Helper()
	if _, err := s.postJSON(ctx, "/api/auth/signup", map[string]any{"email": "dirty-" + tag + "@peer.test", "password": "Passw0rd!dirty"}, http.StatusCreated); err != nil {
		t.Fatal(err)
	}
	if _, err := s.postJSON(ctx, "/api/db/shared/tables/posts", map[string]any{"title": "dirty " + tag}, http.StatusCreated); err != nil {
		t.Fatal(err)
	}
	if _, err := s.postJSON(ctx, "/api/db/ledger/tables/entries", map[string]any{"amount": 1, "memo": "dirty " + tag}, http.StatusCreated); err != nil {
		t.Fatal(err)
	}
	if err := s.upload(ctx, "uploads", "dirty/"+tag+".txt", "text/x-dirty", []byte("must not survive a storage restore")); err != nil {
		t.Fatal(err)
	}
	if !instances {
		return ""
	}
	if _, err := s.postJSON(ctx, "/api/db/workspace/dirty-"+tag+"/tables/tasks", map[string]any{"title": "orphan"}, http.StatusCreated); err != nil {
		t.Fatal(err)
	}
	return "workspace:dirty-" + tag
}
