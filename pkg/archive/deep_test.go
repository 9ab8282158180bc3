package archive

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// deepArchive writes a .tar.gz with two objects listed the way the
// official CLI lists them (etag, no sha256), the member of "b/two" holding
// body instead of what its etag was computed from.
func deepArchive(t *testing.T, body string, withSHA bool) string {
	t.Helper()
	one, two := "first object", "second object"
	m1, m2 := md5.Sum([]byte(one)), md5.Sum([]byte(two))
	sha := ""
	if withSHA {
		s := sha256.Sum256([]byte(two))
		sha = fmt.Sprintf(`,"sha256":%q`, hex.EncodeToString(s[:]))
	}
	objects := fmt.Sprintf(`"storage":{"objects":[{"key":"a/one","size":%d,"etag":"%x","contentType":"text/plain"},`+
		`{"key":"b/two","size":%d,"etag":"\"%x\"","contentType":"text/plain"%s},`+
		`{"key":"c/multi","size":1,"etag":"0123-2","contentType":"text/plain"}]}`, len(one), m1, len(two), m2, sha)
	data := buildTarGz(t, []tarEntry{reg("backup.json", string(doc(objects))), reg("storage/a/one", one), reg("storage/b/two", body), reg("storage/c/multi", "x")}, true)
	p := filepath.Join(t.TempDir(), "edgebase-backup-2026-03-07T10-00-05.tar.gz")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestVerifyDeep(t *testing.T) {
	ctx := context.Background()
	good := deepArchive(t, "second object", false)
	rep, err := VerifyDeep(ctx, good)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Objects != 3 || rep.Members != 3 || rep.MD5Checked != 2 || rep.ETagsNotMD5 != 1 || rep.Units == 0 {
		t.Fatalf("report %+v", rep)
	}

	// A changed byte the listing has no sha256 for: Verify cannot see it,
	// the etag can.
	bad := deepArchive(t, "second objecT", false)
	if _, err := Verify(ctx, bad); err != nil {
		t.Fatalf("Verify: %v (the test needs an archive only the etag can refute)", err)
	}
	_, err = VerifyDeep(ctx, bad)
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `object "b/two": the member's md5`) || !strings.Contains(err.Error(), "etag says") {
		t.Fatalf("VerifyDeep of a changed member = %v", err)
	}

	// With a listed sha256 the full hash is compared too.
	rep, err = VerifyDeep(ctx, deepArchive(t, "second object", true))
	if err != nil || rep.SHA256Checked != 1 {
		t.Fatalf("with sha256: %+v %v", rep, err)
	}
}
