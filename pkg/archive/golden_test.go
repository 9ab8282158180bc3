package archive

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/edgevault/edgevault/internal/jsonstream"
)

// TestOfficialSamples reads backups written by the official CLI, rewrites
// them with JSONWriter (and the tar.gz member writers), reads the result
// back and checks that nothing changed: every section byte-for-byte, every
// object's bytes, and the data fingerprint the peer kit took from the live
// server the samples were made from.
func TestOfficialSamples(t *testing.T) {
	dir := samplesDir(t)
	fingerprint, err := os.ReadFile(filepath.Join(dir, "static-small.fingerprint.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"edgebase-backup-static-small.json", "edgebase-backup-static-small.tar.gz"} {
		t.Run(name, func(t *testing.T) {
			f := DetectFormat(name)
			orig, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			c1, s1 := mustRead(t, orig, f)
			if len(s1.Warnings) != 0 {
				t.Errorf("warnings on an official file: %q", s1.Warnings)
			}
			ours := rewrite(t, c1, f)
			c2, s2 := mustRead(t, ours, f)

			if !slices.Equal(c1.order, c2.order) {
				t.Fatalf("value order\n%q\n%q", c1.order, c2.order)
			}
			for _, ref := range c1.order {
				if !bytes.Equal(c1.raw[ref].Bytes(), c2.raw[ref].Bytes()) {
					t.Errorf("%s differs after the rewrite", ref)
				}
			}
			if c1.header != c2.header {
				t.Errorf("header %+v vs %+v", c1.header, c2.header)
			}
			if len(c1.objects) != len(c2.objects) {
				t.Fatalf("objects %d vs %d", len(c1.objects), len(c2.objects))
			}
			for i, o := range c1.objects {
				o2 := c2.objects[i]
				if f == TarGz {
					sum := sha256.Sum256(c1.members[o.Key])
					o.SHA256 = hex.EncodeToString(sum[:])
				}
				if o != o2 {
					t.Errorf("object %+v vs %+v", o, o2)
				}
				if !bytes.Equal(c1.members[o.Key], c2.members[o.Key]) {
					t.Errorf("object %q bytes differ", o.Key)
				}
			}
			if s1.Rows != s2.Rows || s1.Tables != s2.Tables || s1.Users != s2.Users || s1.Members != s2.Members || s1.Objects != s2.Objects {
				t.Errorf("summaries differ:\n%+v\n%+v", s1, s2)
			}
			if f == TarGz && s2.VerifiedObjects != s2.Objects {
				t.Errorf("verified %d of %d objects", s2.VerifiedObjects, s2.Objects)
			}

			got := dataFingerprint(t, c2, f == TarGz)
			for _, line := range strings.Split(strings.TrimSpace(string(fingerprint)), "\n") {
				if strings.HasPrefix(line, "storage ") && f != TarGz {
					continue
				}
				if !slices.Contains(got, line) {
					t.Errorf("fingerprint line %q not reproduced; got %q", line, got)
				}
			}
		})
	}
}

// rewrite writes what c captured with this package's writers.
func rewrite(t *testing.T, c *capture, f Format) []byte {
	t.Helper()
	var js bytes.Buffer
	jw, err := NewJSONWriter(&js, c.header)
	if err != nil {
		t.Fatal(err)
	}
	for _, ref := range c.refs {
		raw := bytes.NewReader(c.raw[ref.String()].Bytes())
		switch ref.Section {
		case SectionControlD1:
			_, err = jw.ControlD1(raw)
		case SectionAuthD1:
			_, err = jw.AuthD1(raw)
		case SectionAuthShard:
			_, err = jw.AuthShard(ref.Name, raw)
		case SectionDatabase:
			_, err = jw.Database(ref.Name, raw)
		case SectionConfig:
			_, err = jw.Config(raw)
		case SectionDataNamespace:
			_, err = jw.DataNamespace(ref.Name, raw)
		case SectionSecrets:
			var m map[string]string
			if err = json.Unmarshal(c.raw[ref.String()].Bytes(), &m); err == nil {
				_, err = jw.Secrets(m)
			}
		}
		if err != nil {
			t.Fatalf("%s: %v", ref, err)
		}
	}
	var part bytes.Buffer
	sm := NewStorageMember(&part, testTime)
	for _, o := range c.objects {
		if f == TarGz {
			data := c.members[o.Key]
			e, err := sm.Add(o.Key, int64(len(data)), bytes.NewReader(data))
			if err != nil {
				t.Fatal(err)
			}
			o.SHA256 = e.SHA256
		}
		if err := jw.StorageObject(o); err != nil {
			t.Fatal(err)
		}
	}
	if err := jw.Close(); err != nil {
		t.Fatal(err)
	}
	if f == JSON {
		return js.Bytes()
	}
	if err := sm.Close(); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := WriteHeadMember(&out, &js, int64(js.Len()), testTime); err != nil {
		t.Fatal(err)
	}
	out.Write(part.Bytes())
	if err := WriteTrailerMember(&out); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// dataFingerprint recomputes the peer kit's fingerprint lines (users,
// tables, storage) from a backup's content.
func dataFingerprint(t *testing.T, c *capture, storage bool) []string {
	t.Helper()
	rows := func(ref, table string) []map[string]any {
		var v struct {
			Tables map[string][]map[string]any `json:"tables"`
		}
		raw := c.raw[ref].Bytes()
		if ref == "auth.d1" {
			raw = append(append([]byte(`{"tables":`), raw...), '}')
		}
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		if err := dec.Decode(&v); err != nil {
			t.Fatal(err)
		}
		return v.Tables[table]
	}
	sha := func(s string) string {
		sum := sha256.Sum256([]byte(s))
		return hex.EncodeToString(sum[:])
	}
	line := func(kind, name string, rs []map[string]any, key string) string {
		sort.Slice(rs, func(i, j int) bool { return fmt.Sprint(rs[i][key]) < fmt.Sprint(rs[j][key]) })
		items := make([]any, len(rs))
		for i, r := range rs {
			items[i] = r
		}
		return fmt.Sprintf("%s %s %d %s", kind, name, len(rs), sha(canon(t, items)))
	}
	var users []map[string]any
	for _, u := range rows("auth.d1", "_users") {
		users = append(users, map[string]any{"id": u["id"], "email": u["email"], "displayName": u["displayName"], "role": u["role"]})
	}
	out := []string{
		line("users", "all", users, "email"),
		line("table", "shared.posts", rows(`dataNamespaces["shared"]`, "posts"), "id"),
		line("table", "shared.tags", rows(`dataNamespaces["shared"]`, "tags"), "id"),
		line("table", "ledger.entries", rows(`databases["ledger"]`, "entries"), "id"),
	}
	if storage {
		for _, bucket := range []string{"uploads", "avatars"} {
			var lines []string
			for key, data := range c.members {
				if p, ok := strings.CutPrefix(key, bucket+"/"); ok {
					lines = append(lines, fmt.Sprintf("%s %d %s", p, len(data), sha(string(data))))
				}
			}
			slices.Sort(lines)
			out = append(out, fmt.Sprintf("storage %s %d %s", bucket, len(lines), sha(strings.Join(lines, "\n"))))
		}
	}
	return out
}

// canon is the peer kit's canonical JSON: sorted keys, JavaScript spelling.
func canon(t *testing.T, v any) string {
	switch v := v.(type) {
	case []any:
		parts := make([]string, len(v))
		for i, e := range v {
			parts[i] = canon(t, e)
		}
		return "[" + strings.Join(parts, ",") + "]"
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			ks, _ := jsonstream.AppendString(nil, k)
			parts[i] = string(ks) + ":" + canon(t, v[k])
		}
		return "{" + strings.Join(parts, ",") + "}"
	case json.Number:
		f, err := v.Float64()
		if err != nil || math.IsInf(f, 0) || math.Abs(f) >= 1e21 || f != 0 && math.Abs(f) < 1e-6 {
			t.Fatalf("number %s outside what this canonical form supports", v)
		}
		return strconv.FormatFloat(f, 'f', -1, 64)
	case string:
		s, _ := jsonstream.AppendString(nil, v)
		return string(s)
	case nil:
		return "null"
	case bool:
		return strconv.FormatBool(v)
	}
	t.Fatalf("unexpected %T", v)
	return ""
}

// Verify accepts the official files as they are.
func TestVerifyOfficialSamples(t *testing.T) {
	dir := samplesDir(t)
	for _, name := range []string{"edgebase-backup-static-small.json", "edgebase-backup-static-small.tar.gz"} {
		s, err := Verify(context.Background(), filepath.Join(dir, name))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if s.Users != 5 || s.DOs != 2 || s.DataNamespaces != 1 || s.Manifest != "absent" || len(s.SHA256) != 64 {
			t.Errorf("%s: %+v", name, s)
		}
		if DetectFormat(name) == TarGz && (s.Objects != 10 || s.Members != 10 || s.StorageBytes != s.MemberBytes) {
			t.Errorf("%s: %+v", name, s)
		}
	}
}
