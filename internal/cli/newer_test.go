package cli

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgevault/edgevault/internal/miniflare"
	"github.com/edgevault/edgevault/pkg/archive"
	"github.com/edgevault/edgevault/pkg/edgebase"
	"github.com/edgevault/edgevault/pkg/edgebase/edgebasetest"
)

// Tests of issue 15: edgevault works with EdgeBase 0.4.x-0.5.x (the
// emulator's Profile05) as well as 0.2.8, deciding by what the server's
// replies show.

// profiles are the emulator profiles every round trip runs on.
var profiles = []edgebasetest.Profile{edgebasetest.Profile028, edgebasetest.Profile05}

// fingerprintOpts fingerprints e with extra options (its own client).
func fingerprintOpts(ctx context.Context, t *testing.T, e *edgebasetest.Emulator, opts edgebasetest.FingerprintOptions) *edgebasetest.Fingerprint {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{}, Timeout: time.Minute}
	t.Cleanup(hc.CloseIdleConnections)
	opts.ServiceKey, opts.Client = e.ServiceKey(), hc
	fp, err := edgebasetest.TakeFingerprint(ctx, e.URL(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return fp
}

// createJSON runs backup create --json with storage into a fresh
// directory and returns the archive and the result document.
func createJSON(ctx context.Context, t *testing.T, e *edgebasetest.Emulator, extra ...string) (string, map[string]any) {
	t.Helper()
	out := t.TempDir()
	args := append([]string{"backup", "create", "--json", "--include-storage", "--output", out}, conn(e)...)
	r := cliRun(ctx, t, append(args, extra...)...)
	if r.code != 0 {
		t.Fatalf("backup create failed:\n%s", r)
	}
	doc := r.jsonDoc(t)
	file, _ := doc["file"].(string)
	if file == "" {
		t.Fatalf("no file in %v", doc)
	}
	return file, doc
}

// serverOf returns the "server" object of a create result.
func serverOf(t *testing.T, doc map[string]any) map[string]any {
	t.Helper()
	s, ok := doc["server"].(map[string]any)
	if !ok {
		t.Fatalf("create result without a server object: %v", doc)
	}
	return s
}

func stringsIn(v any) []string {
	var out []string
	arr, _ := v.([]any)
	for _, x := range arr {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}

func withText(ws []string, s string) []string {
	var out []string
	for _, w := range ws {
		if strings.Contains(w, s) {
			out = append(out, w)
		}
	}
	return out
}

// demoMasked counts SeedDemo's objects a 0.4+ server serves masked (every
// type SeedDemo uses outside the passive list).
func demoMasked(t *testing.T) int64 {
	t.Helper()
	passive := map[string]bool{"text/plain": true, "image/png": true, "image/jpeg": true}
	known := map[string]bool{"application/json": true, "application/pdf": true, "application/octet-stream": true, "text/csv": true, "application/x-big": true}
	var n int64
	for _, o := range edgebasetest.DemoObjects() {
		ct := edgebase.NormalizeContentType(o.ContentType)
		switch {
		case passive[ct]:
		case known[ct]:
			n++
		default:
			t.Fatalf("DemoObjects uses type %q: classify it here", o.ContentType)
		}
	}
	return n
}

// objectsOf returns storage.objects of an archive.
func objectsOf(ctx context.Context, t *testing.T, file string) []archive.Object {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	v := &objectLister{}
	if _, err := archive.Read(ctx, f, archive.DetectFormat(file), v); err != nil {
		t.Fatal(err)
	}
	return v.objs
}

type objectLister struct {
	archive.NopVisitor
	objs []archive.Object
	dos  []string
}

func (l *objectLister) BeginValue(_ context.Context, ref archive.ValueRef) (io.Writer, error) {
	if ref.Section == archive.SectionDatabase {
		l.dos = append(l.dos, ref.Name)
	}
	return nil, nil
}

// databasesOf returns the DO names in an archive's databases.
func databasesOf(ctx context.Context, t *testing.T, file string) []string {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	v := &objectLister{}
	if _, err := archive.Read(ctx, f, archive.DetectFormat(file), v); err != nil {
		t.Fatal(err)
	}
	return v.dos
}

// packagedStateDir creates the default state directory of a packaged app
// on this OS (under the test's user data directory) and returns it.
func packagedStateDir(t *testing.T, app string) string {
	t.Helper()
	dirs, err := miniflare.PackagedStateDirs(app)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dirs[0], 0o755); err != nil {
		t.Fatal(err)
	}
	return dirs[0]
}

func (l *objectLister) StorageObject(_ context.Context, o archive.Object) error {
	l.objs = append(l.objs, o)
	return nil
}

// TestRoundTripPerProfile: backup, then restore into a fresh target of the
// same profile, gives equal fingerprints: types compared exactly on 0.2.8
// and, on 0.5, in the normalised form the server serves. On 0.5 the
// backup reports the masked types, and the stored types of the target
// differ from the source's only where a type was masked, and only to
// application/octet-stream (what the archive recorded, never a guess).
func TestRoundTripPerProfile(t *testing.T) {
	t.Parallel()
	for _, p := range profiles {
		t.Run(p.String(), func(t *testing.T) {
			t.Parallel()
			ctx := testContext(t)
			src := newSource(t, edgebasetest.Options{Profile: p})
			opts := edgebasetest.FingerprintOptions{Instances: src.demo.Instances}
			if p == edgebasetest.Profile05 {
				opts.Types = edgebasetest.TypesNormalized
			}
			want := fingerprintOpts(ctx, t, src.emu, opts)
			file, doc := createJSON(ctx, t, src.emu)
			server := serverOf(t, doc)
			masked := int64(0)
			if p == edgebasetest.Profile05 {
				masked = demoMasked(t)
			}
			if server["contentTypesMasked"] != float64(masked) || server["internalKeysSkipped"] != float64(0) ||
				server["configRedacted"] != (p == edgebasetest.Profile05) {
				t.Errorf("create reported server %v; want %d masked, no internal keys, config redacted only on 0.5", server, masked)
			}
			if ws := withText(stringsIn(doc["warnings"]), "masked content type"); int64(len(ws)) != min(masked, 1) {
				t.Errorf("warnings about masked types %q; want %d", ws, min(masked, 1))
			}
			dst := newEmulator(t, edgebasetest.Options{Profile: p, ServiceKey: "target-key"})
			r := cliRun(ctx, t, append([]string{"backup", "restore", "--from", file, "--yes", "--json"}, conn(dst)...)...)
			if r.code != 0 {
				t.Fatalf("restore failed:\n%s", r)
			}
			if ws := withText(stringsIn(r.jsonDoc(t)["warnings"]), "masked content type"); int64(len(ws)) != min(masked, 1) {
				t.Errorf("restore warnings about the manifest's masked types %q; want %d", ws, min(masked, 1))
			}
			if d := edgebasetest.Diff(want, fingerprintOpts(ctx, t, dst, opts)); d != "" {
				t.Errorf("target differs from source after restore:\n%s", d)
			}
			if p != edgebasetest.Profile05 {
				return
			}
			stored := opts
			stored.StoredType = src.emu.StoredContentType
			srcStored := fingerprintOpts(ctx, t, src.emu, stored)
			stored.StoredType = dst.StoredContentType
			dstStored := fingerprintOpts(ctx, t, dst, stored)
			changed := 0
			for _, l := range strings.Split(edgebasetest.Diff(srcStored, dstStored), "\n") {
				if strings.HasPrefix(l, "+ object ") {
					changed++
					if !strings.HasSuffix(l, strconv.Quote(edgebase.DefaultContentType)) {
						t.Errorf("a restored object's stored type is neither the source's nor %s: %s", edgebase.DefaultContentType, l)
					}
				}
			}
			if changed == 0 || int64(changed) > masked {
				t.Errorf("%d objects changed their stored type; want between 1 and the %d masked ones", changed, masked)
			}
		})
	}
}

// repackWith writes a copy of a .tar.gz archive (as the official CLI lays
// them out: one gzip stream, storage/<key> members) that also holds the
// given objects of src, in storage.objects and as members: what an
// archive taken by another tool from a 0.2.8 server holding upload-grant
// markers looks like.
func repackWith(ctx context.Context, t *testing.T, file string, src *edgebasetest.Emulator, keys []string) string {
	t.Helper()
	var members []tarMember
	var doc []byte
	eachMember(t, file, func(h *tar.Header, b []byte) bool {
		if h.Name == "backup.json" {
			doc = b
		} else {
			members = append(members, tarMember{hdr: tar.Header{Name: h.Name, Typeflag: h.Typeflag, Mode: h.Mode}, data: b})
		}
		return true
	})
	// backup.json, member by member in its own order, with the extra
	// storage.objects entries.
	var out bytes.Buffer
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	if _, err := dec.Token(); err != nil {
		t.Fatal(err)
	}
	out.WriteString("{")
	for i := 0; dec.More(); i++ {
		k, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			t.Fatal(err)
		}
		if k == "storage" {
			var st struct {
				Objects []archive.Object `json:"objects"`
			}
			if err := json.Unmarshal(v, &st); err != nil {
				t.Fatal(err)
			}
			// Listed first, as the official CLI's sorted listing has them
			// ('_' sorts before the lower-case bucket names).
			var objs []archive.Object
			var extra []tarMember
			for _, key := range keys {
				data, ct, err := src.ObjectContent(ctx, key)
				if err != nil {
					t.Fatal(err)
				}
				if ct == "" {
					ct = edgebase.DefaultContentType
				}
				objs = append(objs, archive.Object{Key: key, Size: int64(len(data)), ETag: "grant", ContentType: ct})
				extra = append(extra, tarMember{hdr: tar.Header{Name: "storage/" + key}, data: data})
			}
			st.Objects = append(objs, st.Objects...)
			members = append(extra, members...)
			if v, err = json.Marshal(st); err != nil {
				t.Fatal(err)
			}
		}
		if i > 0 {
			out.WriteString(",")
		}
		kb, _ := json.Marshal(k)
		out.Write(kb)
		out.WriteString(":")
		out.Write(v)
	}
	out.WriteString("}")

	dst := filepath.Join(t.TempDir(), filepath.Base(file))
	tarball := makeTarGz(t, append([]tarMember{{hdr: tar.Header{Name: "backup.json", Mode: 0o600}, data: out.Bytes()}}, members...)...)
	if err := os.WriteFile(dst, tarball, 0o600); err != nil {
		t.Fatal(err)
	}
	return dst
}

// mixedTypes are objects whose types a 0.4+ server stores in normalised
// form (mixed case, parameters), passive and masked alike.
var mixedTypes = []edgebasetest.Object{
	{Key: "uploads/mixed/page.html", ContentType: "Text/HTML; Charset=UTF-8", Data: []byte("<p>page</p>")},
	{Key: "uploads/mixed/photo.png", ContentType: "IMAGE/PNG", Data: []byte("\x89PNG mixed")},
	{Key: "uploads/mixed/data.json", ContentType: "application/JSON; v=1", Data: []byte(`{"v":1}`)},
	{Key: "avatars/mixed/subs.vtt", ContentType: "text/vtt; charset=utf-8", Data: []byte("WEBVTT")},
	{Key: "avatars/mixed/odd", ContentType: "not a type", Data: []byte("odd")},
}

// TestRestore028ArchiveIntoNewer: an archive of a 0.2.8 server that holds
// upload-grant markers (ordinary objects to 0.2.8; written by a tool that
// did not skip them) and mixed-case, parameterised types restores into a
// 0.5 server: exit 0, the markers skipped with one notice and counted in
// --json, and the data equal modulo the documented normalisation: every
// object's stored type on the target is the normalised form of the
// source's (compared through the stored types, as the download masks
// HTML and JSON).
func TestRestore028ArchiveIntoNewer(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	src := newSource(t, edgebasetest.Options{})
	if err := src.emu.AddObjects(ctx, mixedTypes...); err != nil {
		t.Fatal(err)
	}
	grants, err := src.emu.AddUploadGrants(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	opts := edgebasetest.FingerprintOptions{Instances: src.demo.Instances, Types: edgebasetest.TypesNormalized}
	want := fingerprintOpts(ctx, t, src.emu, opts)

	ours, doc := createJSON(ctx, t, src.emu)
	if s := serverOf(t, doc); s["internalKeysSkipped"] != float64(3) || s["contentTypesMasked"] != float64(0) {
		t.Errorf("backup of 0.2.8 reported server %v; want the 3 grant markers skipped and nothing masked", s)
	}
	for _, o := range objectsOf(ctx, t, ours) {
		if edgebase.IsInternalKey(o.Key) {
			t.Errorf("edgevault's own backup holds internal key %s", o.Key)
		}
		for _, m := range mixedTypes {
			if m.Key == o.Key && o.ContentType != m.ContentType {
				t.Errorf("0.2.8 backup recorded %s as %q, want the exact %q", o.Key, o.ContentType, m.ContentType)
			}
		}
	}
	file := repackWith(ctx, t, ours, src.emu, grants)
	if r := cliRun(ctx, t, "backup", "verify", file); r.code != 0 {
		t.Fatalf("the archive holding grant markers does not verify:\n%s", r)
	}

	dst := newEmulator(t, edgebasetest.Options{Profile: edgebasetest.Profile05, ServiceKey: "newer-key"})
	r := cliRun(ctx, t, append([]string{"backup", "restore", "--from", file, "--yes", "--json"}, conn(dst)...)...)
	if r.code != 0 {
		t.Fatalf("restore into 0.5 failed:\n%s", r)
	}
	res := r.jsonDoc(t)
	if res["internalKeysSkipped"] != float64(3) {
		t.Errorf("restore result internalKeysSkipped %v, want 3: %v", res["internalKeysSkipped"], res)
	}
	if ws := withText(stringsIn(res["warnings"]), "server-internal storage keys"); len(ws) != 1 || !strings.Contains(ws[0], "skipped 3 ") {
		t.Errorf("notices about internal keys %q; want exactly one, naming 3", ws)
	}
	for _, k := range grants {
		if _, err := dst.StoredContentType(ctx, k); err == nil {
			t.Errorf("grant marker %s was restored", k)
		}
	}
	opts.StoredType = dst.StoredContentType
	if d := edgebasetest.Diff(want, fingerprintOpts(ctx, t, dst, opts)); d != "" {
		t.Errorf("0.5 target differs from the 0.2.8 source (types normalised):\n%s", d)
	}
}

// TestBackupNewerMaskedTypes: on a 0.4+ server, HTML, SVG and JSON
// objects come back from the admin API as octet-stream downloads. The
// backup warns once with the count (human and --json output alike), the
// manifest and --json carry it, the archive records application/
// octet-stream for them and no served type as a real one; a restore of
// the archive warns before it starts.
func TestBackupNewerMaskedTypes(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	src := newEmulator(t, edgebasetest.Options{Profile: edgebasetest.Profile05})
	objs := []edgebasetest.Object{
		{Key: "uploads/site/index.html", ContentType: "text/html", Data: []byte("<h1>hi</h1>")},
		{Key: "uploads/site/logo.svg", ContentType: "image/svg+xml", Data: []byte("<svg/>")},
		{Key: "uploads/site/data.json", ContentType: "application/json", Data: []byte(`{"a":1}`)},
		{Key: "avatars/me.png", ContentType: "image/png", Data: []byte("\x89PNG")},
	}
	if err := src.AddObjects(ctx, objs...); err != nil {
		t.Fatal(err)
	}
	// Human output: one warning line naming the count and how to get the
	// exact types.
	r := cliRun(ctx, t, append([]string{"backup", "create", "--include-storage", "--output", t.TempDir()}, conn(src)...)...)
	if r.code != 0 {
		t.Fatalf("backup create failed:\n%s", r)
	}
	if n := strings.Count(r.stderr, "masked content type"); n != 1 || !strings.Contains(r.stderr, "warning: 3 storage objects") || !strings.Contains(r.stderr, "S3 API") {
		t.Errorf("stderr has %d masked-type warnings; want one naming 3 objects and R2's S3 API:\n%s", n, r.stderr)
	}
	if !strings.Contains(r.stdout, "3 content types masked") {
		t.Errorf("the summary does not report the masked types:\n%s", r.stdout)
	}

	file, doc := createJSON(ctx, t, src)
	if s := serverOf(t, doc); s["contentTypesMasked"] != float64(3) {
		t.Errorf("--json server %v; want contentTypesMasked 3", s)
	}
	if ws := withText(stringsIn(doc["warnings"]), "masked content type"); len(ws) != 1 {
		t.Errorf("--json warnings %q; want one about masked types", doc["warnings"])
	}
	man, err := archive.ReadManifestFile(file + ".manifest.json")
	if err != nil {
		t.Fatal(err)
	}
	if man.Server == nil || man.Server.ContentTypesMasked != 3 {
		t.Errorf("manifest server %+v; want 3 masked", man.Server)
	}
	for _, o := range objectsOf(ctx, t, file) {
		want := edgebase.DefaultContentType
		if o.Key == "avatars/me.png" {
			want = "image/png"
		}
		if o.ContentType != want {
			t.Errorf("archive records %s as %q, want %q", o.Key, o.ContentType, want)
		}
	}

	dst := newEmulator(t, edgebasetest.Options{Profile: edgebasetest.Profile05})
	r = cliRun(ctx, t, append([]string{"backup", "restore", "--from", file, "--dry-run", "--json"}, conn(dst)...)...)
	if r.code != 0 {
		t.Fatalf("dry run failed:\n%s", r)
	}
	plan, _ := r.jsonDoc(t)["plan"].(map[string]any)
	if ws := withText(stringsIn(plan["warnings"]), "manifest says 3 objects had a masked content type"); len(ws) != 1 {
		t.Errorf("the restore plan does not warn about the masked types: %v", plan["warnings"])
	}
}

// TestRedactedConfigRoundTrip: a 0.5 server whose config snapshot holds
// "[REDACTED]" in every position Appendix B.3 lists backs up (the
// archive keeps the snapshot as it is, the manifest and --json say it was
// redacted, the block whose definition is withheld is named) and
// restores; --dry-run lists what the drift guard could not compare
// instead of calling it missing.
func TestRedactedConfigRoundTrip(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	cfg := edgebasetest.RedactionConfig()
	src := newEmulator(t, edgebasetest.Options{Profile: edgebasetest.Profile05, Config: &cfg})
	for _, step := range []error{
		src.AddRows(ctx, "vault", "tokens", edgebasetest.Row{"id": "t1", "value": "token one"}, edgebasetest.Row{"id": "t2", "value": "token two"}),
		src.AddRows(ctx, "vault", "accounts", edgebasetest.Row{"id": "a1", "name": "ada", "password": "pw", "active": true, "signupUrl": "x"}),
		src.AddRows(ctx, "shared", "posts", edgebasetest.Row{"id": "p1", "title": "hello"}),
		src.AddRows(ctx, "ledger", "entries", edgebasetest.Row{"id": "e1", "amount": 1.5, "memo": "m"}),
		src.AddObjects(ctx, edgebasetest.Object{Key: "uploads/a.txt", ContentType: "text/plain", Data: []byte("a")}),
	} {
		if step != nil {
			t.Fatal(step)
		}
	}
	opts := edgebasetest.FingerprintOptions{Config: &cfg, Types: edgebasetest.TypesNormalized}
	want := fingerprintOpts(ctx, t, src, opts)

	file, doc := createJSON(ctx, t, src, "--skip-instances")
	if s := serverOf(t, doc); s["configRedacted"] != true {
		t.Errorf("--json server %v; want configRedacted", s)
	}
	if ws := withText(stringsIn(doc["warnings"]), `DB block "secrets"`); len(ws) != 1 {
		t.Errorf("warnings %q; want one naming the withheld block \"secrets\"", doc["warnings"])
	}
	man, err := archive.ReadManifestFile(file + ".manifest.json")
	if err != nil {
		t.Fatal(err)
	}
	if man.Server == nil || !man.Server.ConfigRedacted {
		t.Errorf("manifest server %+v; want configRedacted", man.Server)
	}

	dst := newEmulator(t, edgebasetest.Options{Profile: edgebasetest.Profile05, Config: &cfg, ServiceKey: "redacted-target"})
	r := cliRun(ctx, t, append([]string{"backup", "restore", "--from", file, "--dry-run"}, conn(dst)...)...)
	if r.code != 0 {
		t.Fatalf("dry run failed:\n%s", r)
	}
	if !strings.Contains(r.stdout, "not compared with the target's schema") || !strings.Contains(r.stdout, `of table "tokens"`) {
		t.Errorf("the dry run does not list the redacted table as not compared:\n%s", r.stdout)
	}
	r = cliRun(ctx, t, append([]string{"backup", "restore", "--from", file, "--dry-run", "--json"}, conn(dst)...)...)
	if r.code != 0 {
		t.Fatalf("dry run failed:\n%s", r)
	}
	plan, _ := r.jsonDoc(t)["plan"].(map[string]any)
	if u := stringsIn(plan["uncompared"]); len(u) != 1 || !strings.Contains(u[0], `"value"`) || !strings.Contains(u[0], `"tokens"`) {
		t.Errorf("plan uncompared %q; want one line about the columns of vault's tokens", u)
	}
	if d := stringsIn(plan["warnings"]); len(withText(d, "missing")) > 0 || len(withText(d, "not in the target's schema")) > 0 {
		t.Errorf("redacted parts reported as missing: %q", d)
	}

	r = cliRun(ctx, t, append([]string{"backup", "restore", "--from", file, "--yes", "--json"}, conn(dst)...)...)
	if r.code != 0 {
		t.Fatalf("restore failed:\n%s", r)
	}
	if d := edgebasetest.Diff(want, fingerprintOpts(ctx, t, dst, opts)); d != "" {
		t.Errorf("target differs from source:\n%s", d)
	}
}

// TestScopeErrors: a scoped service key without backup:*:*:exec is
// refused like a wrong key; create and restore say which scope it needs,
// in the message, a hint and a requiredScope field.
func TestScopeErrors(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	cfg := edgebasetest.DefaultConfig()
	const key = "jb_reader_reader-secret"
	cfg.ServiceKeys = append(cfg.ServiceKeys, edgebasetest.ServiceKey{Kid: "reader", Tier: "scoped", Scopes: []string{"db:*:*:*"}, SecretSource: "inline", InlineSecret: key})
	emu := newEmulator(t, edgebasetest.Options{Config: &cfg})
	archiveFile := filepath.Join(t.TempDir(), "edgebase-backup-2026-03-07T10-00-00.json")
	if err := os.WriteFile(archiveFile, []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		code string
	}{
		{"create", []string{"backup", "create", "--output", t.TempDir()}, "backup_create_failed"},
		{"restore", []string{"backup", "restore", "--from", archiveFile, "--yes"}, "backup_restore_failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append(append([]string{}, tc.args...), "--url", emu.URL(), "--service-key", key, "--state-dir", emu.StateDir())
			r := cliRun(ctx, t, append(args, "--json")...)
			if r.code != ExitError {
				t.Fatalf("exit %d; want %d\n%s", r.code, ExitError, r)
			}
			doc := r.jsonDoc(t)
			msg, _ := doc["message"].(string)
			hint, _ := doc["hint"].(string)
			if doc["code"] != tc.code || !strings.Contains(msg, edgebase.BackupScope) || doc["requiredScope"] != edgebase.BackupScope ||
				!strings.Contains(hint, "needs the scope "+edgebase.BackupScope) {
				t.Errorf("error %v; want code %s, the scope %s in message, hint and requiredScope", doc, tc.code, edgebase.BackupScope)
			}
			if tc.name == "restore" && !strings.HasPrefix(hint, "nothing was written to the target") {
				t.Errorf("restore hint %q lost what it said about the target", hint)
			}
			r = cliRun(ctx, t, args...)
			if !strings.Contains(r.stderr, "hint: ") || !strings.Contains(r.stderr, edgebase.BackupScope) {
				t.Errorf("human output does not explain the scope:\n%s", r)
			}
		})
	}
}

// TestPackagedAppState: --state-dir takes a packaged app's state
// directory (<data>/<app>/state); without any instance source, the
// error's hint names the packaged app's state directory when the config
// names the project and that directory exists.
func TestPackagedAppState(t *testing.T) {
	// Not parallel: it sets the user data directory.
	ctx := testContext(t)
	data := t.TempDir()
	t.Setenv("XDG_DATA_HOME", data)
	t.Setenv("HOME", data)
	t.Setenv("LOCALAPPDATA", data)
	cfg := edgebasetest.DefaultConfig()
	cfg.Extra = append(cfg.Extra, edgebasetest.RawMember{Key: "name", Value: json.RawMessage(`"Desk"`)})
	state := packagedStateDir(t, "edgebase-desk")
	emu := newEmulator(t, edgebasetest.Options{Config: &cfg, StateDir: state})
	if err := emu.AddRows(ctx, "workspace:ws-7", "tasks", edgebasetest.Row{"id": "t7", "title": "packaged"}); err != nil {
		t.Fatal(err)
	}

	r := cliRun(ctx, t, "backup", "create", "--json", "--output", t.TempDir(), "--url", emu.URL(), "--service-key", emu.ServiceKey())
	if r.code != ExitError {
		t.Fatalf("a backup without an instance source: exit %d, want %d\n%s", r.code, ExitError, r)
	}
	doc := r.jsonDoc(t)
	if hint, _ := doc["hint"].(string); !strings.Contains(hint, "--state-dir "+state) || doc["packagedState"] != state {
		t.Errorf("error %v; want a hint naming the packaged app's state %s", doc, state)
	}

	r = cliRun(ctx, t, "backup", "create", "--json", "--output", t.TempDir(), "--url", emu.URL(), "--service-key", emu.ServiceKey(), "--state-dir", state)
	if r.code != 0 {
		t.Fatalf("backup with the packaged app's state dir failed:\n%s", r)
	}
	file, _ := r.jsonDoc(t)["file"].(string)
	if dos := databasesOf(ctx, t, file); !slices.Contains(dos, "workspace:ws-7") {
		t.Errorf("the archive holds DOs %q; want workspace:ws-7 from the packaged app's state", dos)
	}
}
