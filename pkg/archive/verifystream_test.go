package archive

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"testing"
)

func TestVerifyStream(t *testing.T) {
	ctx := context.Background()
	data, _ := writeFull(t)
	const name = "edgebase-backup-2026-03-07T10-00-05.json"
	sum := sha256.Sum256(data)
	good := Manifest{Archive: name, Format: JSON, Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:])}

	s, err := VerifyStream(ctx, name, bytes.NewReader(data), &good)
	if err != nil || s.Manifest != "ok" || s.SHA256 != good.SHA256 || s.Rows == 0 || s.RowsBy.Total() != s.Rows {
		t.Fatalf("VerifyStream = %+v, %v; want ok", s, err)
	}
	if s, err := VerifyStream(ctx, name, bytes.NewReader(data), nil); err != nil || s.Manifest != "absent" {
		t.Fatalf("without a manifest: %q, %v", s.Manifest, err)
	}

	bad := good
	bad.SHA256 = hex.EncodeToString(make([]byte, 32))
	if s, err := VerifyStream(ctx, name, bytes.NewReader(data), &bad); !errors.Is(err, ErrManifestMismatch) || s.Manifest != "mismatch" {
		t.Fatalf("wrong sha256: %q, %v; want a mismatch", s.Manifest, err)
	}

	// A manifest of parts (an archive joined server-side) is checked part
	// by part in the same pass.
	half := int64(len(data) / 2)
	h1, h2 := sha256.Sum256(data[:half]), sha256.Sum256(data[half:])
	parted := Manifest{Archive: name, Format: JSON, Size: int64(len(data)), Parts: []ManifestPart{
		{Offset: 0, Size: half, SHA256: hex.EncodeToString(h1[:])},
		{Offset: half, Size: int64(len(data)) - half, SHA256: hex.EncodeToString(h2[:])},
	}}
	if s, err := VerifyStream(ctx, name, bytes.NewReader(data), &parted); err != nil || s.Manifest != "ok" {
		t.Fatalf("parts: %q, %v; want ok", s.Manifest, err)
	}
	parted.Parts[1].SHA256 = hex.EncodeToString(h1[:])
	if _, err := VerifyStream(ctx, name, bytes.NewReader(data), &parted); !errors.Is(err, ErrManifestMismatch) {
		t.Fatalf("a wrong part: %v; want a mismatch", err)
	}

	if _, err := VerifyStream(ctx, name, bytes.NewReader(append(append([]byte(nil), data...), "junk"...)), nil); err == nil {
		t.Fatal("trailing bytes were accepted")
	}
}
