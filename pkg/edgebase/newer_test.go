package edgebase_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/edgevault/edgevault/pkg/edgebase"
	"github.com/edgevault/edgevault/pkg/edgebase/edgebasetest"
)

// The client against both emulator profiles: it decides from what each
// reply shows, so the same calls give honest answers on 0.2.8 and 0.5.
func TestStorageAgainstBothProfiles(t *testing.T) {
	ctx := context.Background()
	for _, p := range []edgebasetest.Profile{edgebasetest.Profile028, edgebasetest.Profile05} {
		t.Run(p.String(), func(t *testing.T) {
			newer := p == edgebasetest.Profile05
			e := edgebasetest.NewTest(t, edgebasetest.Options{ServiceKey: "k", Profile: p})
			sum, err := e.SeedDemo(ctx)
			if err != nil {
				t.Fatal(err)
			}
			grants, err := e.AddUploadGrants(ctx, 4)
			if err != nil {
				t.Fatal(err)
			}
			c := newClient(t, e.URL(), "k", &noSleep{})

			internal := 0
			total, err := c.ListStorage(ctx, func(o edgebase.Object) error {
				if edgebase.IsInternalKey(o.Key) {
					internal++
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			wantInternal := map[bool]int{false: len(grants), true: 0}[newer]
			if internal != wantInternal || total != int64(sum.Objects+wantInternal) {
				t.Fatalf("listed %d objects, %d internal; want %d + %d", total, internal, sum.Objects, wantInternal)
			}

			demo := map[string]string{}
			for _, o := range edgebasetest.DemoObjects() {
				demo[o.Key] = o.ContentType
			}
			for _, tc := range []struct {
				key        string
				maskedOn05 bool
			}{
				{"uploads/é.txt", false},                    // text/plain: passive
				{"avatars/deep/a/b/c/d/e/f/g/h.png", false}, // image/png: passive
				{"avatars/ünïcödé/🎉/x.json", true},          // application/json
				{"uploads/日本語/ファイル.txt", false},             // text/plain; charset=utf-8 -> text/plain
				{"uploads/bytes.bin", true},                 // octet-stream is served as a download too
				{"avatars/no-type", true},                   // none stored
				{"uploads/semi;colon,comma.txt", false},     // text/plain
			} {
				want, _, err := e.ObjectContent(ctx, tc.key)
				if err != nil {
					t.Fatal(err)
				}
				var info edgebase.ObjectInfo
				var got []byte
				if err := c.GetObject(ctx, tc.key, func(r io.Reader, i edgebase.ObjectInfo) error {
					info = i
					got, err = io.ReadAll(r)
					return err
				}); err != nil {
					t.Fatalf("get %q: %v", tc.key, err)
				}
				if !bytes.Equal(got, want) {
					t.Errorf("%s: bytes differ", tc.key)
				}
				masked := newer && tc.maskedOn05
				if info.Masked != masked {
					t.Errorf("%s: Masked = %v, want %v (%+v)", tc.key, info.Masked, masked, info)
				}
				switch {
				case masked && (info.ContentType != "" || info.ServedContentType != "application/octet-stream"):
					t.Errorf("%s: a masked type is presented as real: %+v", tc.key, info)
				case !masked && newer && info.ContentType != edgebase.NormalizeContentType(demo[tc.key]):
					t.Errorf("%s: type %q, want the normalised stored type %q", tc.key, info.ContentType, edgebase.NormalizeContentType(demo[tc.key]))
				case !newer && demo[tc.key] != "" && info.ContentType != demo[tc.key]:
					t.Errorf("%s: type %q, want the stored %q", tc.key, info.ContentType, demo[tc.key])
				}
			}

			// A round trip compares normalised types: 0.2.8 stores what was
			// sent, 0.5 its normalised form.
			sent := "Text/Plain; charset=UTF-8"
			if err := c.PutObject(ctx, "uploads/rt.txt", sent, 2, edgebase.BytesBody([]byte("rt"))); err != nil {
				t.Fatal(err)
			}
			_, stored, err := e.ObjectContent(ctx, "uploads/rt.txt")
			if err != nil || edgebase.NormalizeContentType(stored) != edgebase.NormalizeContentType(sent) {
				t.Fatalf("stored %q for %q: %v", stored, sent, err)
			}
			if (stored == sent) == newer {
				t.Errorf("stored %q on %s", stored, p)
			}

			// Grant markers: refused by the newer server, which is why a
			// restore must skip them.
			err = c.PutObject(ctx, grants[0], "", 1, edgebase.BytesBody([]byte("x")))
			if newer != errors.Is(err, edgebase.ErrBadRequest) {
				t.Errorf("put of a grant marker: %v", err)
			}
			err = c.GetObject(ctx, grants[1], func(r io.Reader, _ edgebase.ObjectInfo) error { _, err := io.Copy(io.Discard, r); return err })
			if newer != errors.Is(err, edgebase.ErrBadRequest) {
				t.Errorf("get of a grant marker: %v", err)
			}
			deleted, err := c.WipeStorage(ctx)
			if err != nil || deleted != int64(sum.Objects+1+wantInternal) {
				t.Fatalf("wipe deleted %d, %v; want %d", deleted, err, sum.Objects+1+wantInternal)
			}
		})
	}
}

// A 0.5 config snapshot parses, and everything it withholds reads as
// Unknown, while what it shows stays exact.
func TestRedactedConfigFromTheEmulator(t *testing.T) {
	cfg := edgebasetest.RedactionConfig()
	for _, p := range []edgebasetest.Profile{edgebasetest.Profile028, edgebasetest.Profile05} {
		t.Run(p.String(), func(t *testing.T) {
			newer := p == edgebasetest.Profile05
			e := edgebasetest.NewTest(t, edgebasetest.Options{ServiceKey: "k", Profile: p, Config: &cfg})
			got, raw, err := newClient(t, e.URL(), "k", &noSleep{}).Config(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if newer != (len(got.Redacted) > 0) || newer != bytes.Contains(raw, []byte(edgebase.RedactedValue)) {
				t.Fatalf("%d redacted paths on %s", len(got.Redacted), p)
			}
			unknownOn05 := func(present bool) edgebase.Presence {
				switch {
				case newer:
					return edgebase.Unknown
				case present:
					return edgebase.Present
				}
				return edgebase.Missing
			}
			for _, tc := range []struct {
				block, table, field string
				want                edgebase.Presence
			}{
				{"shared", "posts", "title", edgebase.Present},
				{"shared", "posts", "nope", edgebase.Missing},
				{"vault", "tokens", "value", unknownOn05(true)},
				{"vault", "tokens", "nope", unknownOn05(false)},
				{"vault", "accounts", "password", edgebase.Present},
				{"vault", "accounts", "nope", edgebase.Missing},
				{"secrets", "notes", "body", unknownOn05(true)},
				{"secrets", "nope", "x", unknownOn05(false)},
				{"nope", "x", "y", edgebase.Missing},
			} {
				if got := got.HasField(tc.block, tc.table, tc.field); got != tc.want {
					t.Errorf("HasField(%s, %s, %s) = %v, want %v", tc.block, tc.table, tc.field, got, tc.want)
				}
			}
			ws, _ := got.Block("workspace")
			if !ws.Dynamic() || ws.DataNamespace() || ws.RoutingUnknown {
				t.Errorf("workspace: %+v", ws)
			}
			if newer && !strings.Contains(strings.Join(got.Redacted, " "), "/serviceKeys/keys/1/inlineSecret") {
				t.Errorf("Redacted: %q", got.Redacted)
			}
		})
	}
}
