package edgebasetest_test

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgevault/edgevault/pkg/edgebase/edgebasetest"
)

// objectType returns the content type of key's object line.
func objectType(t *testing.T, fp *edgebasetest.Fingerprint, key string) string {
	t.Helper()
	prefix := "object " + strconv.Quote(key) + " "
	for _, l := range fp.Lines {
		if strings.HasPrefix(l, prefix) {
			ct, err := strconv.Unquote(l[strings.LastIndex(l, ` "`)+1:])
			if err != nil {
				t.Fatal(err)
			}
			return ct
		}
	}
	t.Fatalf("no object line for %s in\n%s", key, fp)
	return ""
}

// TestFingerprintTypes: object lines carry the served type by default,
// its normalised form with TypesNormalized, and the stored type with
// StoredType, which is what tells a 0.4+ server's masked types apart; a
// given Config replaces the snapshot, which 0.4.2+ may redact.
func TestFingerprintTypes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	objs := []edgebasetest.Object{
		{Key: "uploads/page.html", ContentType: "Text/HTML; charset=UTF-8", Data: []byte("<p>")},
		{Key: "uploads/a.png", ContentType: "IMAGE/PNG", Data: []byte("png")},
	}
	for _, tc := range []struct {
		name      string
		profile   edgebasetest.Profile
		types     edgebasetest.TypeForm
		stored    bool
		html, png string
	}{
		{"0.2.8 served", edgebasetest.Profile028, edgebasetest.TypesServed, false, "Text/HTML; charset=UTF-8", "IMAGE/PNG"},
		{"0.2.8 normalised", edgebasetest.Profile028, edgebasetest.TypesNormalized, false, "text/html", "image/png"},
		{"0.5 served", edgebasetest.Profile05, edgebasetest.TypesServed, false, "application/octet-stream", "image/png"},
		{"0.5 stored", edgebasetest.Profile05, edgebasetest.TypesServed, true, "Text/HTML; charset=UTF-8", "IMAGE/PNG"},
		{"0.5 stored normalised", edgebasetest.Profile05, edgebasetest.TypesNormalized, true, "text/html", "image/png"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := edgebasetest.RedactionConfig()
			emu := edgebasetest.NewTest(t, edgebasetest.Options{StateDir: t.TempDir(), Profile: tc.profile, Config: &cfg})
			// Seeded objects keep their type verbatim, like objects stored
			// before an upgrade to 0.4+.
			if err := emu.AddObjects(ctx, objs...); err != nil {
				t.Fatal(err)
			}
			hc := &http.Client{Transport: &http.Transport{}}
			defer hc.CloseIdleConnections()
			opts := edgebasetest.FingerprintOptions{ServiceKey: emu.ServiceKey(), Client: hc, Types: tc.types, Config: &cfg}
			if tc.stored {
				opts.StoredType = emu.StoredContentType
			}
			fp, err := edgebasetest.TakeFingerprint(ctx, emu.URL(), opts)
			if err != nil {
				t.Fatal(err)
			}
			if got := objectType(t, fp, "uploads/page.html"); got != tc.html {
				t.Errorf("html type %q, want %q", got, tc.html)
			}
			if got := objectType(t, fp, "uploads/a.png"); got != tc.png {
				t.Errorf("png type %q, want %q", got, tc.png)
			}
		})
	}
	t.Run("a redacted snapshot without Config", func(t *testing.T) {
		cfg := edgebasetest.RedactionConfig()
		emu := edgebasetest.NewTest(t, edgebasetest.Options{StateDir: t.TempDir(), Profile: edgebasetest.Profile05, Config: &cfg})
		hc := &http.Client{Transport: &http.Transport{}}
		defer hc.CloseIdleConnections()
		if _, err := edgebasetest.TakeFingerprint(ctx, emu.URL(), edgebasetest.FingerprintOptions{ServiceKey: emu.ServiceKey(), Client: hc}); err == nil {
			t.Error("a fingerprint read a snapshot that withholds a whole DB block; want an error asking for Config")
		} else if !strings.Contains(err.Error(), "FingerprintOptions.Config") {
			t.Errorf("error %q does not point at FingerprintOptions.Config", err)
		}
	})
}
