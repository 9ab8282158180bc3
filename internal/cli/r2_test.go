package cli

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"maps"
	"strings"
	"testing"

	"github.com/edgevault/edgevault/pkg/edgebase/edgebasetest"
)

// r2Env is a test environment whose R2 credentials are the emulator's S3
// endpoint's (through the environment, as a user would pass the secret).
func r2Env(t *testing.T, accessKey string) Env {
	env := testEnv(t)
	vals := map[string]string{"R2_ACCESS_KEY_ID": accessKey, "R2_SECRET_ACCESS_KEY": edgebasetest.S3SecretAccessKey}
	env.Getenv = func(k string) string { return vals[k] }
	return env
}

// r2Flags points R2 direct at e's S3 endpoint (the same objects the
// admin API serves).
func r2Args(t *testing.T, e *edgebasetest.Emulator) ([]string, *edgebasetest.S3Stats, func(int64)) {
	url, stats, throttle := e.ServeS3(t)
	return []string{"--r2-endpoint", url, "--r2-bucket", e.S3Bucket()}, stats, throttle
}

func TestR2DirectRoundTrips(t *testing.T) {
	ctx := testContext(t)
	src := newSource(t, edgebasetest.Options{})
	// A server-internal key: never backed up, never wiped.
	grant := edgebasetest.UploadGrantPrefix + "1893456000000/0123456789abcdef0123456789abcdef"
	if err := src.emu.AddObjects(ctx, edgebasetest.Object{Key: grant, Data: []byte("g")}); err != nil {
		t.Fatal(err)
	}
	want := fingerprint(ctx, t, src.emu, src.demo.Instances...)
	srcR2, stats, _ := r2Args(t, src.emu)

	out := t.TempDir()
	args := append(append([]string{"backup", "create", "--json", "--include-storage", "--output", out, "--range-keys", "3"}, conn(src.emu)...), srcR2...)
	r := cliRunEnv(ctx, t, r2Env(t, edgebasetest.S3AccessKeyID), args...)
	if r.code != 0 {
		t.Fatalf("R2-direct backup failed:\n%s", r)
	}
	file, _ := r.jsonDoc(t)["file"].(string)
	if n := len(src.emu.RequestsTo("dump-storage")); n != 0 {
		t.Errorf("R2-direct backup sent %d dump-storage requests, want none", n)
	}
	if stats.Lists.Load() == 0 {
		t.Error("the S3 endpoint was never listed")
	}
	if v := cliRun(ctx, t, "backup", "verify", file); v.code != 0 {
		t.Fatalf("verify failed:\n%s", v)
	}

	t.Run("R2-direct archive through the admin API", func(t *testing.T) {
		dst := newEmulator(t, edgebasetest.Options{ServiceKey: "k2"})
		junkTarget(ctx, t, dst)
		if r := cliRun(ctx, t, append([]string{"backup", "restore", "--from", file, "--yes"}, conn(dst)...)...); r.code != 0 {
			t.Fatalf("restore failed:\n%s", r)
		}
		if d := edgebasetest.Diff(want, fingerprint(ctx, t, dst, src.demo.Instances...)); d != "" {
			t.Errorf("target differs:\n%s", d)
		}
	})

	adminFile := backupTo(ctx, t, src.emu, "--include-storage")
	t.Run("same storage section and members as through the admin API", func(t *testing.T) {
		directObjs, directMembers := storageOf(t, file)
		adminObjs, adminMembers := storageOf(t, adminFile)
		if directObjs != adminObjs {
			t.Errorf("storage.objects differ:\nR2 direct %s\nadmin API %s", directObjs, adminObjs)
		}
		if !maps.Equal(directMembers, adminMembers) || len(directMembers) == 0 {
			t.Errorf("storage members differ: %d vs %d", len(directMembers), len(adminMembers))
		}
	})

	t.Run("admin-API archive through R2 direct", func(t *testing.T) {
		dst := newEmulator(t, edgebasetest.Options{ServiceKey: "k3"})
		junkTarget(ctx, t, dst)
		if err := dst.AddObjects(ctx, edgebasetest.Object{Key: grant, Data: []byte("g")},
			edgebasetest.Object{Key: "stale/not-in-archive.txt", Data: []byte("x")}); err != nil {
			t.Fatal(err)
		}
		dstR2, _, _ := r2Args(t, dst)
		args := append(append([]string{"backup", "restore", "--from", adminFile, "--yes"}, conn(dst)...), dstR2...)
		r := cliRunEnv(ctx, t, r2Env(t, edgebasetest.S3AccessKeyID), args...)
		if r.code != 0 {
			t.Fatalf("R2-direct restore failed:\n%s", r)
		}
		if !strings.Contains(r.stdout+r.stderr, "every object the archive lacks") {
			t.Errorf("the plan does not announce the R2-direct wipe:\n%s", r)
		}
		if n := len(dst.RequestsTo("restore-storage")); n != 0 {
			t.Errorf("R2-direct restore sent %d restore-storage requests, want none", n)
		}
		if d := edgebasetest.Diff(want, fingerprint(ctx, t, dst, src.demo.Instances...)); d != "" {
			t.Errorf("target differs:\n%s", d)
		}
		if _, _, err := dst.ObjectContent(ctx, grant); err != nil {
			t.Errorf("the internal key was wiped: %v", err)
		}
		if _, _, err := dst.ObjectContent(ctx, "stale/not-in-archive.txt"); err == nil {
			t.Error("an object the archive lacks survived the wipe")
		}
	})
}

// Profile05 masks HTML, SVG and JSON on the admin API; through R2 direct
// their types survive a backup and a restore.
func TestR2DirectKeepsMaskedTypes(t *testing.T) {
	ctx := testContext(t)
	src := newEmulator(t, edgebasetest.Options{Profile: edgebasetest.Profile05})
	types := map[string]string{"site/index.html": "text/html", "site/logo.svg": "image/svg+xml", "site/data.json": "application/json", "site/a.png": "image/png"}
	for k, ct := range types {
		if err := src.AddObjects(ctx, edgebasetest.Object{Key: k, ContentType: ct, Data: []byte("<x/>")}); err != nil {
			t.Fatal(err)
		}
	}
	srcR2, _, _ := r2Args(t, src)
	out := t.TempDir()
	args := append(append([]string{"backup", "create", "--json", "--include-storage", "--output", out}, conn(src)...), srcR2...)
	r := cliRunEnv(ctx, t, r2Env(t, edgebasetest.S3AccessKeyID), args...)
	if r.code != 0 {
		t.Fatalf("backup failed:\n%s", r)
	}
	if strings.Contains(r.stdout+r.stderr, "masked") {
		t.Errorf("R2 direct reported masked types:\n%s", r)
	}
	file, _ := r.jsonDoc(t)["file"].(string)
	for _, direct := range []bool{true, false} {
		dst := newEmulator(t, edgebasetest.Options{Profile: edgebasetest.Profile05, ServiceKey: "k4"})
		args := append([]string{"backup", "restore", "--from", file, "--yes"}, conn(dst)...)
		if direct {
			dstR2, _, _ := r2Args(t, dst)
			args = append(args, dstR2...)
		}
		if r := cliRunEnv(ctx, t, r2Env(t, edgebasetest.S3AccessKeyID), args...); r.code != 0 {
			t.Fatalf("restore (direct %v) failed:\n%s", direct, r)
		}
		for k, ct := range types {
			got, err := dst.StoredContentType(ctx, k)
			if err != nil || got != ct {
				t.Errorf("direct %v: %s stored as %q (%v), want %q", direct, k, got, err, ct)
			}
		}
	}
}

func TestR2DirectRefusals(t *testing.T) {
	ctx := testContext(t)
	src := newEmulator(t, edgebasetest.Options{})
	if err := src.AddObjects(ctx, edgebasetest.Object{Key: "a/b.txt", Data: []byte("b")}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, accessKey, bucket string
		throttle                int64
		want                    string
	}{
		{name: "wrong credentials", accessKey: "wrong", want: "R2_ACCESS_KEY_ID"},
		{name: "missing bucket", accessKey: edgebasetest.S3AccessKeyID, bucket: "no-such-bucket", want: "--r2-bucket"},
		{name: "throttled", accessKey: edgebasetest.S3AccessKeyID, throttle: 1 << 20, want: "--r2-endpoint"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r2a, _, throttle := r2Args(t, src)
			if tc.bucket != "" {
				r2a[3] = tc.bucket
			}
			throttle(tc.throttle)
			out := t.TempDir()
			args := append(append([]string{"backup", "create", "--include-storage", "--output", out}, conn(src)...), r2a...)
			r := cliRunEnv(ctx, t, r2Env(t, tc.accessKey), args...)
			if r.code == 0 || !strings.Contains(r.stdout+r.stderr, tc.want) {
				t.Errorf("exit %d, want a failure naming %s:\n%s", r.code, tc.want, r)
			}
			if strings.Contains(r.stdout+r.stderr, edgebasetest.S3SecretAccessKey) {
				t.Error("the secret was printed")
			}
			if a := archives(t, out); len(a) != 0 {
				t.Errorf("archives written under a final name: %v", a)
			}
		})
	}
}

// storageOf returns an archive's storage.objects (compact JSON) and the
// SHA-256 of each storage member.
func storageOf(t *testing.T, file string) (string, map[string]string) {
	t.Helper()
	members := map[string]string{}
	objs := ""
	eachMember(t, file, func(h *tar.Header, b []byte) bool {
		switch {
		case h.Name == "backup.json":
			var doc struct {
				Storage struct {
					Objects json.RawMessage `json:"objects"`
				} `json:"storage"`
			}
			if err := json.Unmarshal(b, &doc); err != nil {
				t.Fatal(err)
			}
			objs = string(doc.Storage.Objects)
		case strings.HasPrefix(h.Name, "storage/") && h.Typeflag == tar.TypeReg:
			sum := sha256.Sum256(b)
			members[h.Name] = hex.EncodeToString(sum[:])
		}
		return true
	})
	return objs, members
}
