package provenance

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgevault/edgevault/pkg/archive"
	"github.com/edgevault/edgevault/pkg/blob/fs"
)

func newKey(t *testing.T) *KeySigner {
	t.Helper()
	dir := t.TempDir()
	s, err := GenerateKey(filepath.Join(dir, "k.key"), filepath.Join(dir, "k.pub"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func manifest(name string, at time.Time) archive.Manifest {
	return archive.Manifest{Version: archive.ManifestVersion, Archive: name, Format: archive.JSON, Size: 10,
		SHA256: strings.Repeat("ab", 32), CreatedAt: at, Source: "https://a.example", Rows: 3}
}

func TestKeyFilesRoundTrip(t *testing.T) {
	dir := t.TempDir()
	s, err := GenerateKey(filepath.Join(dir, "k.key"), filepath.Join(dir, "k.pub"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := GenerateKey(filepath.Join(dir, "k.key"), filepath.Join(dir, "k2.pub")); err == nil {
		t.Fatal("GenerateKey overwrote an existing key file")
	}
	again, err := ReadKeyFile(filepath.Join(dir, "k.key"))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ReadPublicKeyFile(filepath.Join(dir, "k.pub"))
	if err != nil {
		t.Fatal(err)
	}
	if again.KeyID() != s.KeyID() || pub.KeyID() != s.KeyID() {
		t.Fatalf("key ids differ: %s %s %s", s.KeyID(), again.KeyID(), pub.KeyID())
	}
	m := manifest("edgebase-backup-2026-01-01T00-00-00.json", time.Unix(0, 0).UTC())
	if err := Sign(context.Background(), &m, again); err != nil {
		t.Fatal(err)
	}
	if err := Verify(m, pub); err != nil {
		t.Fatalf("a manifest signed with the key file does not verify with its public key: %v", err)
	}
}

func TestVerifyRefuses(t *testing.T) {
	ctx := context.Background()
	k, other := newKey(t), newKey(t)
	signed := manifest("edgebase-backup-2026-01-01T00-00-00.json", time.Unix(100, 0).UTC())
	if err := Sign(ctx, &signed, k); err != nil {
		t.Fatal(err)
	}
	if err := Verify(signed, k.Public()); err != nil {
		t.Fatal(err)
	}
	// Round trip through the file format keeps the signature valid.
	var sb strings.Builder
	if err := archive.EncodeManifest(&sb, signed); err != nil {
		t.Fatal(err)
	}
	decoded, err := archive.DecodeManifest(strings.NewReader(sb.String()))
	if err != nil {
		t.Fatal(err)
	}
	if err := Verify(decoded, k.Public()); err != nil {
		t.Fatalf("after encode/decode: %v", err)
	}

	rewritten := decoded
	rewritten.SHA256 = strings.Repeat("cd", 32) // the archive was replaced and the hash recomputed
	byOther := manifest(signed.Archive, signed.CreatedAt)
	if err := Sign(ctx, &byOther, other); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		m    archive.Manifest
		want error
		says string
	}{
		{"unsigned", manifest(signed.Archive, signed.CreatedAt), ErrUnsigned, "no signature"},
		{"rewritten", rewritten, ErrBadSignature, "changed after it was signed"},
		{"another key", byOther, ErrUntrustedKey, "signed by key " + other.KeyID()[:16]},
	} {
		err := Verify(tc.m, k.Public())
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s: Verify = %v, want %v saying %q", tc.name, err, tc.want, tc.says)
		}
	}
}

func chainOf(t *testing.T, n int) []archive.Manifest {
	t.Helper()
	var ms []archive.Manifest
	for i := range n {
		at := time.Date(2026, 1, 1, i, 0, 0, 0, time.UTC)
		m := manifest(archive.FileName(at, false), at)
		if i > 0 {
			m.Previous = Digest(ms[i-1])
		}
		ms = append(ms, m)
	}
	return ms
}

func TestCheckChain(t *testing.T) {
	ms := chainOf(t, 4)
	if r := CheckChain(ms); r.Err() != nil || len(r.Notes) != 0 {
		t.Fatalf("an intact chain: %+v", r)
	}
	// Retention removed the oldest: a note, not a failure.
	if r := CheckChain(ms[1:]); r.Err() != nil || len(r.Notes) != 1 {
		t.Fatalf("a chain without its oldest archive: %+v", r)
	}
	// One removed in the middle.
	gap := []archive.Manifest{ms[0], ms[1], ms[3]}
	err := CheckChain(gap).Err()
	if !errors.Is(err, ErrChain) || !strings.Contains(err.Error(), "missing link") || !strings.Contains(err.Error(), ms[3].Archive) {
		t.Fatalf("a removed middle archive: %v", err)
	}
	// Two swapped: the created times were rewritten, the links say otherwise.
	swapped := append([]archive.Manifest(nil), ms...)
	swapped[1].CreatedAt, swapped[2].CreatedAt = ms[2].CreatedAt, ms[1].CreatedAt
	err = CheckChain(swapped).Err()
	if !errors.Is(err, ErrChain) || !strings.Contains(err.Error(), "reordered") {
		t.Fatalf("reordered archives: %v", err)
	}
	// Other sources are chains of their own.
	foreign := manifest("edgebase-backup-2026-01-01T01-30-00.json", time.Date(2026, 1, 1, 1, 30, 0, 0, time.UTC))
	foreign.Source = "https://b.example"
	if r := CheckChain(append(ms, foreign)); r.Err() != nil {
		t.Fatalf("a second source broke the first's chain: %v", r.Err())
	}
}

func TestSealerLinksToThePreviousManifestOfTheSource(t *testing.T) {
	ctx := context.Background()
	store, err := fs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	k := newKey(t)
	seal := &Sealer{Store: store, Signer: k}
	put := func(m archive.Manifest) {
		var sb strings.Builder
		if err := archive.EncodeManifest(&sb, m); err != nil {
			t.Fatal(err)
		}
		if err := store.Put(ctx, archive.ManifestName(m.Archive), strings.NewReader(sb.String())); err != nil {
			t.Fatal(err)
		}
	}
	var made []archive.Manifest
	for i := range 3 {
		at := time.Date(2026, 1, 1, i, 0, 0, 0, time.UTC)
		m := manifest(archive.FileName(at, false), at)
		if err := seal.Seal(ctx, &m); err != nil {
			t.Fatal(err)
		}
		put(m)
		made = append(made, m)
		// A later archive of another source is not a link.
		o := manifest(archive.FileName(at.Add(time.Minute), false), at.Add(time.Minute))
		o.Source = "https://other.example"
		put(o)
	}
	if made[0].Previous != "" || made[1].Previous != Digest(made[0]) || made[2].Previous != Digest(made[1]) {
		t.Fatalf("links: %q %q %q", made[0].Previous, made[1].Previous, made[2].Previous)
	}
	for _, m := range made {
		if err := Verify(m, k.Public()); err != nil {
			t.Fatal(err)
		}
	}
	if r := CheckChain(made); r.Err() != nil {
		t.Fatal(r.Err())
	}
	// Sealing the same manifest again (a repeated assembly) gives the same link.
	again := manifest(made[2].Archive, made[2].CreatedAt)
	if err := seal.Seal(ctx, &again); err != nil || again.Previous != made[2].Previous {
		t.Fatalf("resealing: %v, previous %q, want %q", err, again.Previous, made[2].Previous)
	}
}
