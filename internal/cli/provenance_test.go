package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgevault/edgevault/pkg/archive"
	"github.com/edgevault/edgevault/pkg/edgebase/edgebasetest"
)

// keygen makes a key pair in a fresh directory and returns its files.
func keygen(ctx context.Context, t *testing.T) (key, pub string) {
	t.Helper()
	key = filepath.Join(t.TempDir(), "signing.key")
	r := cliRun(ctx, t, "keygen", "--out", key, "--json")
	if r.code != 0 {
		t.Fatalf("keygen:\n%s", r)
	}
	doc := r.jsonDoc(t)
	pub, _ = doc["publicKey"].(string)
	if st, err := os.Stat(key); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("private key %s: %v %v", key, st, err)
	}
	return key, pub
}

// flipMemberByte rewrites a .tar.gz with one byte of one storage member
// changed: a valid tar.gz whose content no longer matches.
func flipMemberByte(t *testing.T, file string) string {
	t.Helper()
	flipped := ""
	out := repack(t, file, func(name string, b []byte) ([]byte, bool) {
		if flipped == "" && strings.HasPrefix(name, "storage/") && len(b) > 0 {
			b[len(b)/2] ^= 0x01
			flipped = name
		}
		return b, true
	})
	if flipped == "" {
		t.Fatal("no storage member to flip")
	}
	if err := os.WriteFile(file, out, 0o600); err != nil {
		t.Fatal(err)
	}
	return strings.TrimPrefix(flipped, "storage/")
}

// rehashManifest does what someone who can write the archives can do:
// recompute the manifest's size and SHA-256 for the file as it is now.
func rehashManifest(t *testing.T, file string) {
	t.Helper()
	m, err := archive.ReadManifestFile(archive.ManifestName(file))
	if err != nil {
		t.Fatal(err)
	}
	n, sum, err := archive.HashFile(file)
	if err != nil {
		t.Fatal(err)
	}
	m.Size, m.SHA256, m.Parts = n, sum, nil
	if err := archive.WriteManifestFile(archive.ManifestName(file), m); err != nil {
		t.Fatal(err)
	}
}

func wantRefused(ctx context.Context, t *testing.T, what string, says []string, args ...string) {
	t.Helper()
	r := cliRun(ctx, t, args...)
	if r.code == 0 {
		t.Errorf("%s: verify passed, want it refused:\n%s", what, r)
		return
	}
	for _, s := range says {
		if !strings.Contains(r.stderr, s) {
			t.Errorf("%s: the refusal does not say %q:\n%s", what, s, r)
		}
	}
}

func TestSignedChainedBackupsAndTampering(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	src := newSource(t, edgebasetest.Options{})
	key, pub := keygen(ctx, t)
	_, otherPub := keygen(ctx, t)
	dir := t.TempDir()
	var files []string
	for i := range 3 {
		if i > 0 {
			time.Sleep(1100 * time.Millisecond) // archive names have one-second resolution
		}
		files = append(files, backupInto(ctx, t, src.emu, dir, "--include-storage", "--sign-key", key))
	}
	for i, f := range files {
		m, err := archive.ReadManifestFile(archive.ManifestName(f))
		if err != nil {
			t.Fatal(err)
		}
		if m.Signature == nil || (i > 0) != (m.Previous != "") {
			t.Fatalf("%s: signature %v, previous %q", f, m.Signature, m.Previous)
		}
	}
	r := cliRun(ctx, t, "backup", "verify", "--trust", pub, "--deep", dir)
	if r.code != 0 || !strings.Contains(r.stdout, "Chain: 3 archives, unbroken") || !strings.Contains(r.stdout, "Signature: ok") {
		t.Fatalf("verify of the signed chain:\n%s", r)
	}

	t.Run("an archive signed with another key", func(t *testing.T) {
		wantRefused(ctx, t, "another key", []string{"signed by key", "not trusted"}, "backup", "verify", "--trust", otherPub, files[0])
	})

	t.Run("an unsigned archive under --trust", func(t *testing.T) {
		plain := backupTo(ctx, t, src.emu, "--include-storage")
		if r := cliRun(ctx, t, "backup", "verify", plain); r.code != 0 {
			t.Fatalf("an unsigned archive without --trust:\n%s", r)
		}
		wantRefused(ctx, t, "unsigned", []string{"no signature"}, "backup", "verify", "--trust", pub, plain)
	})

	t.Run("a flipped byte inside a tar member", func(t *testing.T) {
		d := t.TempDir()
		f := filepath.Join(d, filepath.Base(files[1]))
		copyFile(t, files[1], f)
		copyFile(t, archive.ManifestName(files[1]), archive.ManifestName(f))
		key := flipMemberByte(t, f)
		wantRefused(ctx, t, "flipped byte", []string{"archive member content differs from storage.objects", key}, "backup", "verify", f)
		// Even with the manifest rehashed, the content check names it.
		rehashManifest(t, f)
		wantRefused(ctx, t, "flipped byte, manifest rehashed", []string{"differs from the listed sha256", key}, "backup", "verify", f)
	})

	t.Run("a rewritten manifest with a recomputed sha256", func(t *testing.T) {
		// The archive is replaced by another valid one and the manifest
		// rehashed: only the signature can tell.
		d := t.TempDir()
		f := filepath.Join(d, filepath.Base(files[1]))
		copyFile(t, files[2], f)
		copyFile(t, archive.ManifestName(files[1]), archive.ManifestName(f))
		rehashManifest(t, f)
		if r := cliRun(ctx, t, "backup", "verify", f); r.code != 0 {
			t.Fatalf("without --trust the rewritten manifest is consistent, as expected of a hash alone:\n%s", r)
		}
		wantRefused(ctx, t, "rewritten manifest", []string{"changed after it was signed"}, "backup", "verify", "--trust", pub, f)
	})

	t.Run("an archive removed from the middle of the chain", func(t *testing.T) {
		d := t.TempDir()
		for _, f := range []string{files[0], files[2]} {
			copyFile(t, f, filepath.Join(d, filepath.Base(f)))
			copyFile(t, archive.ManifestName(f), archive.ManifestName(filepath.Join(d, filepath.Base(f))))
		}
		wantRefused(ctx, t, "removed archive", []string{"missing link", filepath.Base(files[2])}, "backup", "verify", "--trust", pub, d)
		// The same files listed one by one are checked the same way.
		wantRefused(ctx, t, "removed archive, listed", []string{"missing link"}, "backup", "verify",
			filepath.Join(d, filepath.Base(files[0])), filepath.Join(d, filepath.Base(files[2])))
	})
}
