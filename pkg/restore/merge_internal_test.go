package restore

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/pkg/archive"
	"github.com/edgevault/edgevault/pkg/blob"
	"github.com/edgevault/edgevault/pkg/blob/fs"
	"github.com/edgevault/edgevault/pkg/edgebase"
	"github.com/edgevault/edgevault/pkg/edgebase/edgebasetest"
	"github.com/edgevault/edgevault/pkg/pipeline"
	"github.com/edgevault/edgevault/pkg/r2"
	"github.com/edgevault/edgevault/pkg/sensitive"
)

// smallPages lists a real R2-direct store (the emulator's S3 endpoint) a
// few keys a page, so the merge crosses many page boundaries.
type smallPages struct {
	*r2.Store
	size    int
	mu      sync.Mutex
	deleted []string
}

func (s *smallPages) ListPages(ctx context.Context, startAfter, end string, _ int, fn func([]edgebase.Object) error) error {
	return s.Store.ListPages(ctx, startAfter, end, s.size, fn)
}

func (s *smallPages) DeleteObjects(ctx context.Context, keys []string) error {
	s.mu.Lock()
	s.deleted = append(s.deleted, keys...)
	s.mu.Unlock()
	return s.Store.DeleteObjects(ctx, keys)
}

type mergeRig struct {
	ctx   context.Context
	emu   *edgebasetest.Emulator
	jobs  *pipeline.Jobs
	store *smallPages
	tasks *Tasks
	job   *events.Job
}

func newMergeRig(t *testing.T, pageSize int) *mergeRig {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	emu := edgebasetest.NewTest(t, edgebasetest.Options{StateDir: t.TempDir()})
	h, _, _ := emu.S3()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	st, err := r2.New(r2.Config{Endpoint: srv.URL, Bucket: emu.S3Bucket(), AccessKeyID: edgebasetest.S3AccessKeyID,
		SecretAccessKey: sensitive.String(edgebasetest.S3SecretAccessKey), MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	bs, err := fs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bs.Close() })
	jobs, err := pipeline.NewJobs(bs, "staging/", "archives/", nil)
	if err != nil {
		t.Fatal(err)
	}
	sp := &smallPages{Store: st, size: pageSize}
	hc := &http.Client{Transport: &http.Transport{}}
	t.Cleanup(hc.CloseIdleConnections)
	client, err := edgebase.New(edgebase.Options{BaseURL: emu.URL(), ServiceKey: sensitive.String(emu.ServiceKey()), HTTPClient: hc})
	if err != nil {
		t.Fatal(err)
	}
	return &mergeRig{ctx: ctx, emu: emu, jobs: jobs, store: sp, tasks: &Tasks{Jobs: jobs, Client: client, Direct: sp},
		job: &events.Job{ID: "job", Kind: events.KindRestore}}
}

func etagOf(data string) string {
	h := md5.Sum([]byte(data))
	return hex.EncodeToString(h[:])
}

// stage writes the archive's objects as staged ranges of rangeKeys and
// the storage plan.
func (m *mergeRig) stage(t *testing.T, objs []archive.Object, rangeKeys int, sorted bool) {
	t.Helper()
	for r := 0; r*rangeKeys < len(objs); r++ {
		chunk := objs[r*rangeKeys : min(len(objs), (r+1)*rangeKeys)]
		err := m.jobs.PutStream(m.ctx, rangeKey(m.jobs, m.job.ID, r), func(w io.Writer) error {
			enc := json.NewEncoder(w)
			for _, o := range chunk {
				if err := enc.Encode(o); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	sp := storagePlan{WipeTask: "wipe", Sorted: sorted, RangeKeys: rangeKeys}
	if err := m.jobs.PutJSON(m.ctx, storagePlanKey(m.jobs, m.job.ID), sp); err != nil {
		t.Fatal(err)
	}
}

// wipe runs one delivery of the storage wipe with its own output prefix.
func (m *mergeRig) wipe(t *testing.T, delivery string) (pipeline.Result, string) {
	t.Helper()
	u := pipeline.Unit{Job: m.job, Task: events.Task{Job: m.job.ID, ID: "wipe", Kind: events.TaskWipeStorage, Phase: PhaseWipeStorage, Wipes: true},
		Output: m.jobs.OutputPrefix(m.job.ID, "wipe", delivery)}
	res, err := m.tasks.wipeStorage(m.ctx, u)
	if err != nil {
		t.Fatalf("wipe: %v", err)
	}
	return res, u.Output
}

// skipFiles reads every skip file under output: range -> keys.
func (m *mergeRig) skipFiles(t *testing.T, output string, ranges int) (map[int][]string, bool) {
	t.Helper()
	var man skipManifest
	err := m.jobs.GetJSON(m.ctx, skipManifestKey(output), &man)
	if errors.Is(err, blob.ErrNotExist) {
		return nil, false
	} else if err != nil {
		t.Fatal(err)
	}
	out := map[int][]string{}
	for r := 0; r < ranges; r++ {
		set := skipSet{}
		if err := m.tasks.readSkipFile(m.ctx, skipFileKey(output, r), set); err != nil {
			t.Fatal(err)
		}
		for k := range set {
			out[r] = append(out[r], k)
		}
		sort.Strings(out[r])
	}
	return out, true
}

func (m *mergeRig) targetKeys(t *testing.T) []string {
	t.Helper()
	var keys []string
	if err := m.store.Store.ListPages(m.ctx, "", "", 0, func(p []edgebase.Object) error {
		for _, o := range p {
			keys = append(keys, o.Key)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return keys
}

// TestMergeAcrossPagesAndRanges: the sorted merge of the staged ranges (3
// keys each) against the target's listing (2 keys a page) deletes exactly
// the extra keys, interleaved anywhere, keeps EdgeBase's internal keys,
// records exactly the unchanged objects in the skip file of their range,
// and leaves changed and missing ones to the uploads; a second delivery
// (a retried or duplicated wipe) records the same skips and deletes
// nothing more.
func TestMergeAcrossPagesAndRanges(t *testing.T) {
	m := newMergeRig(t, 2)
	type obj struct {
		key, data string
		inArchive bool
		onTarget  string // "": absent; "same"; "changed"; "resized"
	}
	grant := edgebase.InternalKeyPrefix + "grant/1"
	objs := []obj{
		{"0-extra-first", "x", false, "same"},
		{"a/1", "one", true, "same"},
		{"a/2", "two", true, "changed"},
		{"a/2.5", "extra", false, "same"},
		{"a/3", "three", true, ""},
		{"a/4", "four", true, "same"},
		{"a/5", "five", true, "resized"},
		{"a/6", "six", true, "same"},
		{"a/6 extra", "x", false, "same"},
		{"a/7", "seven", true, ""},
		{"b/日本", "jp", true, "same"},
		{"b/😀", "emoji", true, "same"},
		{grant, "g", false, "same"},
		{"zz-extra-last", "x", false, "same"},
	}
	var archived []archive.Object
	var wantSkip []string
	var wantDeleted []string
	for _, o := range objs {
		if o.inArchive {
			archived = append(archived, archive.Object{Key: o.key, Size: int64(len(o.data)), ETag: `"` + etagOf(o.data) + `"`})
		}
		var data string
		switch o.onTarget {
		case "":
			continue
		case "same":
			data = o.data
		case "changed":
			data = strings.ToUpper(o.data) // same size, other etag
		case "resized":
			data = o.data + "!"
		}
		if err := m.emu.AddObjects(m.ctx, edgebasetest.Object{Key: o.key, Data: []byte(data)}); err != nil {
			t.Fatal(err)
		}
		switch {
		case o.inArchive && o.onTarget == "same":
			wantSkip = append(wantSkip, o.key)
		case !o.inArchive && o.key != grant:
			wantDeleted = append(wantDeleted, o.key)
		}
	}
	slices.SortFunc(archived, func(a, b archive.Object) int { return strings.Compare(a.Key, b.Key) })
	m.stage(t, archived, 3, true)

	res, out := m.wipe(t, "first")
	got, ok := m.skipFiles(t, out, 4)
	if !ok {
		t.Fatal("no skip manifest")
	}
	var all []string
	for r := 0; r < 4; r++ {
		for _, k := range got[r] {
			i := slices.IndexFunc(archived, func(a archive.Object) bool { return a.Key == k })
			if i/3 != r {
				t.Errorf("key %q recorded in range %d, it is in range %d", k, r, i/3)
			}
			all = append(all, k)
		}
	}
	sort.Strings(all)
	sort.Strings(wantSkip)
	if !slices.Equal(all, wantSkip) {
		t.Errorf("skipped %q, want %q", all, wantSkip)
	}
	sort.Strings(m.store.deleted)
	sort.Strings(wantDeleted)
	if !slices.Equal(m.store.deleted, wantDeleted) {
		t.Errorf("deleted %q, want %q", m.store.deleted, wantDeleted)
	}
	if res.Skipped != int64(len(wantSkip)) || res.Deleted != int64(len(wantDeleted)) {
		t.Errorf("result: %d skipped, %d deleted; want %d, %d", res.Skipped, res.Deleted, len(wantSkip), len(wantDeleted))
	}
	if keys := m.targetKeys(t); !slices.Contains(keys, grant) || slices.Contains(keys, "a/2.5") {
		t.Errorf("target after the wipe: %q", keys)
	}

	m.store.deleted = nil
	res2, out2 := m.wipe(t, "second")
	got2, _ := m.skipFiles(t, out2, 4)
	if fmt.Sprint(got2) != fmt.Sprint(got) || len(m.store.deleted) != 0 || res2.Skipped != res.Skipped || res2.Deleted != 0 {
		t.Errorf("second delivery: skips %v (first %v), deleted %q", got2, got, m.store.deleted)
	}
}

// TestMergeUnsortedArchiveFallsBack: an archive whose objects are not in
// ascending key order (the plan says so, or the staged ranges show it
// although the plan does not) cannot be merged: R2 direct deletes every
// object but EdgeBase's internal keys, records no skips, and says so.
func TestMergeUnsortedArchiveFallsBack(t *testing.T) {
	for _, planSays := range []bool{false, true} {
		t.Run(fmt.Sprintf("plan sorted=%v", planSays), func(t *testing.T) {
			m := newMergeRig(t, 2)
			grant := edgebase.InternalKeyPrefix + "grant/1"
			for _, k := range []string{"a", "b", "c", "d", grant} {
				if err := m.emu.AddObjects(m.ctx, edgebasetest.Object{Key: k, Data: []byte(k)}); err != nil {
					t.Fatal(err)
				}
			}
			var archived []archive.Object
			for _, k := range []string{"d", "a", "c", "b"} {
				archived = append(archived, archive.Object{Key: k, Size: 1, ETag: etagOf(k)})
			}
			m.stage(t, archived, 2, planSays)
			res, out := m.wipe(t, "only")
			if _, ok := m.skipFiles(t, out, 2); ok {
				t.Error("an unsorted archive left a skip manifest")
			}
			if keys := m.targetKeys(t); !slices.Equal(keys, []string{grant}) {
				t.Errorf("target after the wipe: %q, want only the internal key", keys)
			}
			if res.Deleted != 4 || res.Skipped != 0 || len(res.Warnings) == 0 {
				t.Errorf("result %+v", res)
			}
		})
	}
}

// TestIngestNoticesUnsortedObjects: the plan's sorted flag comes from the
// archive's storage.objects order (strictly ascending, byte-wise).
func TestIngestNoticesUnsortedObjects(t *testing.T) {
	for _, tc := range []struct {
		keys     []string
		unsorted bool
	}{
		{[]string{"a", "b", "b/c", "é"}, false},
		{[]string{"a", "c", "b"}, true},
		{[]string{"a", "a"}, true},
		{[]string{"a", edgebase.InternalKeyPrefix + "x", "b"}, false},
	} {
		in := &ingester{rangeKeys: 1 << 20}
		for _, k := range tc.keys {
			if err := in.StorageObject(context.Background(), archive.Object{Key: k}); err != nil {
				t.Fatal(err)
			}
		}
		if in.unsorted != tc.unsorted {
			t.Errorf("%q: unsorted=%v, want %v", tc.keys, in.unsorted, tc.unsorted)
		}
	}
}
