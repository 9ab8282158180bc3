package edgebasetest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"mime"
	"mime/multipart"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/edgevault/edgevault/pkg/edgebase/edgebasetest"
)

func TestParseProfile(t *testing.T) {
	for in, want := range map[string]edgebasetest.Profile{
		"": edgebasetest.Profile028, "0.2.8": edgebasetest.Profile028, "0.2": edgebasetest.Profile028,
		"0.5": edgebasetest.Profile05, "0.5.0": edgebasetest.Profile05, "0.4.2": edgebasetest.Profile05, "v0.5": edgebasetest.Profile05,
	} {
		if got, err := edgebasetest.ParseProfile(in); err != nil || got != want {
			t.Errorf("ParseProfile(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"0.3", "1.0", "latest"} {
		if _, err := edgebasetest.ParseProfile(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if edgebasetest.Profile(0) != edgebasetest.Profile028 || edgebasetest.Profile05.String() != "0.5" {
		t.Fatal("the zero profile must be 0.2.8")
	}
}

type listReply struct {
	Objects []struct {
		Key         string `json:"key"`
		ContentType string `json:"contentType"`
	} `json:"objects"`
	Total int `json:"total"`
}

func listKeys(t *testing.T, e *edgebasetest.Emulator) (map[string]bool, int) {
	t.Helper()
	r := admin(t, e, "dump-storage?action=list", "")
	expect(t, r, 200)
	var l listReply
	if err := json.Unmarshal(r.body, &l); err != nil {
		t.Fatal(err)
	}
	keys := map[string]bool{}
	for _, o := range l.Objects {
		keys[o.Key] = true
		if o.ContentType != "application/octet-stream" {
			t.Errorf("list reports %q for %s", o.ContentType, o.Key)
		}
	}
	if l.Total != len(l.Objects) {
		t.Errorf("total %d, %d objects", l.Total, len(l.Objects))
	}
	return keys, l.Total
}

// B.1: upload-grant markers are invisible to the backup API of a 0.4+
// server, survive its wipe, and cannot be read or written through it; to
// 0.2.8 they are ordinary objects.
func TestUploadGrantsPerProfile(t *testing.T) {
	ctx := context.Background()
	for _, p := range []edgebasetest.Profile{edgebasetest.Profile028, edgebasetest.Profile05} {
		t.Run(p.String(), func(t *testing.T) {
			e := newEmu(t, edgebasetest.Options{Profile: p, Now: newClock().Now})
			grants, err := e.AddUploadGrants(ctx, 3)
			if err != nil || len(grants) != 3 {
				t.Fatalf("grants %v %v", grants, err)
			}
			for _, g := range grants {
				rest := strings.TrimPrefix(g, edgebasetest.UploadGrantPrefix)
				exp, id, ok := strings.Cut(rest, "/")
				if _, err := strconv.ParseInt(exp, 10, 64); !ok || len(exp) != 13 || err != nil || len(id) != 32 {
					t.Fatalf("grant key %q is not <prefix><13-digit ms>/<32 hex>", g)
				}
			}
			if err := e.AddObjects(ctx, edgebasetest.Object{Key: "uploads/a.txt", ContentType: "text/plain", Data: []byte("a")},
				edgebasetest.Object{Key: "uploads/b.txt", ContentType: "text/plain", Data: []byte("b")}); err != nil {
				t.Fatal(err)
			}
			newer := p == edgebasetest.Profile05
			keys, total := listKeys(t, e)
			if wantTotal := map[bool]int{false: 5, true: 2}[newer]; total != wantTotal {
				t.Fatalf("list total %d, want %d", total, wantTotal)
			}
			if keys[grants[0]] == newer {
				t.Fatalf("grant listed = %v on %s", keys[grants[0]], p)
			}
			get := admin(t, e, "dump-storage?action=get&key="+url.QueryEscape(grants[1]), "")
			put := do(t, e, "POST", "/admin/api/backup/restore-storage?action=put&key="+url.QueryEscape(grants[2]), "x", "Content-Type", "application/octet-stream")
			if newer {
				expect(t, get, 400, `"code":400`, grants[1])
				expect(t, put, 400, `"code":400`)
			} else {
				expect(t, get, 200, "1")
				expect(t, put, 200, `"ok":true`)
			}
			wipe := admin(t, e, "restore-storage?action=wipe", "")
			if newer {
				expect(t, wipe, 200, `{"ok":true,"deleted":2}`)
				for _, g := range grants {
					if _, _, err := e.ObjectContent(ctx, g); err != nil {
						t.Errorf("the wipe removed grant %s: %v", g, err)
					}
				}
			} else {
				expect(t, wipe, 200, `{"ok":true,"deleted":5}`)
			}
			if _, total := listKeys(t, e); total != 0 {
				t.Fatalf("%d objects listed after the wipe", total)
			}
		})
	}
}

// B.2 on a 0.4+ server: types are normalised on put; only passive types
// are served as such, the rest as a sandboxed octet-stream attachment, by
// the admin and the public route.
func TestContentTypesProfile05(t *testing.T) {
	ctx := context.Background()
	e := newEmu(t, edgebasetest.Options{Profile: edgebasetest.Profile05})
	// Stored verbatim, as objects written before an upgrade would be.
	if err := e.AddObjects(ctx,
		edgebasetest.Object{Key: "uploads/page.html", ContentType: "text/html; charset=utf-8", Data: []byte("<p>")},
		edgebasetest.Object{Key: "uploads/pic.png", ContentType: "IMAGE/PNG", Data: []byte("png")},
		edgebasetest.Object{Key: "uploads/ファイル \"q\".svg", ContentType: "image/svg+xml", Data: []byte("<svg/>")},
		edgebasetest.Object{Key: "uploads/notype", Data: []byte("?")},
	); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		key, sent, stored string
	}{
		{"uploads/x.txt", "Text/Plain; charset=UTF-8", "text/plain"},
		{"uploads/x.json", "application/json", "application/json"},
		{"uploads/x.bin", "", "application/octet-stream"},
		{"uploads/x.odd", "not a type", "application/octet-stream"},
		{"uploads/x.webp", "image/webp;q=1", "image/webp"},
	} {
		expect(t, do(t, e, "POST", "/admin/api/backup/restore-storage?action=put&key="+url.QueryEscape(tc.key), "data", "Content-Type", tc.sent), 200, `"ok":true`)
		if _, ct, err := e.ObjectContent(ctx, tc.key); err != nil || ct != tc.stored {
			t.Errorf("put %q with %q stored %q, want %q (%v)", tc.key, tc.sent, ct, tc.stored, err)
		}
	}
	// A public upload normalises too.
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	h := make(map[string][]string)
	h["Content-Disposition"] = []string{`form-data; name="file"; filename="u.txt"`}
	h["Content-Type"] = []string{"TEXT/CSV; charset=latin1"}
	fw, _ := mw.CreatePart(h)
	_, _ = io.WriteString(fw, "a,b")
	_ = mw.WriteField("key", "up.csv")
	_ = mw.Close()
	expect(t, do(t, e, "POST", "/api/storage/uploads/upload", body.String(), "Content-Type", mw.FormDataContentType()), 201, `"contentType":"text/csv"`)

	for _, tc := range []struct {
		key      string
		served   string
		filename string // "" = not masked
	}{
		{"uploads/page.html", "application/octet-stream", "page.html"},
		{"uploads/pic.png", "image/png", ""},
		{"uploads/ファイル \"q\".svg", "application/octet-stream", "ファイル \"q\".svg"},
		{"uploads/notype", "application/octet-stream", "notype"},
		{"uploads/x.txt", "text/plain", ""},
		{"uploads/x.json", "application/json", "x.json"},
		{"uploads/x.bin", "application/octet-stream", "x.bin"},
		{"uploads/x.webp", "image/webp", ""},
		{"uploads/up.csv", "application/octet-stream", "up.csv"},
	} {
		want := tc.served
		if tc.filename != "" {
			want = "application/octet-stream"
		}
		for _, route := range []call{
			admin(t, e, "dump-storage?action=get&key="+url.QueryEscape(tc.key), ""),
			do(t, e, "GET", "/api/storage/uploads/"+url.PathEscape(strings.TrimPrefix(tc.key, "uploads/")), ""),
		} {
			expect(t, route, 200)
			if got := route.header.Get("Content-Type"); got != want {
				t.Errorf("%s: Content-Type %q, want %q", tc.key, got, want)
			}
			cd := route.header.Get("Content-Disposition")
			if tc.filename == "" {
				if cd != "" || route.header.Get("Content-Security-Policy") != "" {
					t.Errorf("%s: a passive type is served as a download: %q", tc.key, cd)
				}
				continue
			}
			disp, params, err := mime.ParseMediaType(cd)
			if err != nil || disp != "attachment" || params["filename"] != tc.filename {
				t.Errorf("%s: Content-Disposition %q (%v %v), want attachment named %q", tc.key, cd, disp, params, tc.filename)
			}
			if csp := route.header.Get("Content-Security-Policy"); !strings.Contains(csp, "sandbox") || !strings.Contains(csp, "default-src 'none'") {
				t.Errorf("%s: CSP %q", tc.key, csp)
			}
		}
	}
	// 0.2.8 serves what was stored, verbatim, with no attachment.
	old := newEmu(t, edgebasetest.Options{})
	if err := old.AddObjects(ctx, edgebasetest.Object{Key: "uploads/page.html", ContentType: "text/html; charset=utf-8", Data: []byte("<p>")}); err != nil {
		t.Fatal(err)
	}
	r := admin(t, old, "dump-storage?action=get&key=uploads%2Fpage.html", "")
	if r.header.Get("Content-Type") != "text/html; charset=utf-8" || r.header.Get("Content-Disposition") != "" {
		t.Fatalf("0.2.8 get: %v", r.header)
	}
	expect(t, do(t, old, "POST", "/admin/api/backup/restore-storage?action=put&key=uploads%2Fy", "d", "Content-Type", "Text/Plain; charset=UTF-8"), 200)
	if _, ct, _ := old.ObjectContent(ctx, "uploads/y"); ct != "Text/Plain; charset=UTF-8" {
		t.Fatalf("0.2.8 put stored %q, want the header verbatim", ct)
	}
}

// pointer resolves an RFC 6901 pointer in a decoded JSON value.
func pointer(v any, p string) (any, bool) {
	if p == "" {
		return v, true
	}
	for _, tok := range strings.Split(strings.TrimPrefix(p, "/"), "/") {
		tok = strings.NewReplacer("~1", "/", "~0", "~").Replace(tok)
		switch x := v.(type) {
		case map[string]any:
			var ok bool
			if v, ok = x[tok]; !ok {
				return nil, false
			}
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(x) {
				return nil, false
			}
			v = x[i]
		default:
			return nil, false
		}
	}
	return v, true
}

func getConfig(t *testing.T, e *edgebasetest.Emulator) (any, []byte) {
	t.Helper()
	r := do(t, e, "GET", "/admin/api/backup/config", "")
	expect(t, r, 200)
	var v any
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatal(err)
	}
	return v, r.body
}

// B.3: the 0.4.2+ snapshot puts "[REDACTED]" in every position the
// protocol lists, whatever kind of value stood there.
func TestRedactedConfigProfile05(t *testing.T) {
	cfg := edgebasetest.RedactionConfig()
	e := newEmu(t, edgebasetest.Options{Profile: edgebasetest.Profile05, Config: &cfg})
	v, raw := getConfig(t, e)
	deep32 := "/deep" + strings.Repeat("/level", 32)
	for p, was := range map[string]string{
		"/databases/vault/tables/tokens":                            "object (credential-named table)",
		"/databases/secrets":                                        "object (credential-named block)",
		"/databases/vault/tables/accounts/schema/password":          "object (field definition)",
		"/databases/vault/tables/accounts/schema/active/default":    "boolean (schema default)",
		"/databases/vault/tables/accounts/schema/name/default":      "string (schema default)",
		"/databases/vault/tables/accounts/schema/name/examples":     "array (schema examples)",
		"/databases/vault/tables/accounts/schema/signupUrl/default": "string (schema default)",
		"/databases/workspace/access/canCreate":                     "function",
		"/databases/workspace/access/access":                        "function",
		"/storage/buckets/uploads/access/read":                      "function",
		"/auth/oauth/github/clientSecret":                           "string",
		"/auth/session/cookie":                                      "object",
		"/auth/session/refreshTokens":                               "boolean",
		"/auth/allowedRedirects/1":                                  "string (URL with a password)",
		"/auth/hooks/beforeSignUp":                                  "function",
		"/cors/maxAge":                                              "undefined",
		"/serviceKeys/keys/1/inlineSecret":                          "string",
		"/plugins/stripe/config":                                    "object (plugin config)",
		"/extensions/search/config":                                 "array (extension config)",
		"/email/smtp/password":                                      "string",
		"/apiKeys":                                                  "array",
		"/cloudflare/accountId":                                     "string",
		"/cloudflare/credentials":                                   "boolean",
		"/licenseKey":                                               "number",
		"/integrations/webhookJwt":                                  "string (JWT)",
		"/integrations/stripe":                                      "string (sk_live_)",
		"/integrations/tls":                                         "string (PEM private key)",
		"/integrations/mirror":                                      "string (URL with a password)",
		deep32:                                                      "object (nesting deeper than 32)",
		"/bulk/20099":                                               "number (past 20,000 values)",
	} {
		got, ok := pointer(v, p)
		if !ok || got != edgebasetest.RedactedValue {
			t.Errorf("%s (was %s) = %v, want %q", p, was, got, edgebasetest.RedactedValue)
		}
	}
	for p, want := range map[string]any{
		"/serviceKeys/keys/0/secretRef":                    "SERVICE_KEY",
		"/serviceKeys/keys/1/kid":                          "backup",
		"/databases/vault/provider":                        "do",
		"/databases/workspace/instance":                    true,
		"/auth/oauth/github/clientId":                      "Iv1.0123",
		"/auth/allowedRedirects/0":                         "https://app.example.com/cb",
		"/integrations/public":                             "https://example.com/x",
		"/plugins/stripe/version":                          "1.2.0",
		"/databases/shared/tables/posts/schema/title/type": "string",
		"/bulk/0":          float64(0),
		"/email/smtp/port": float64(587),
	} {
		if got, ok := pointer(v, p); !ok || got != want {
			t.Errorf("%s = %v, want %v (kept)", p, got, want)
		}
	}
	if got, ok := pointer(v, deep32[:len(deep32)-len("/level")]); !ok {
		t.Errorf("nesting at depth 32 was cut: %v", got)
	} else if _, isObj := got.(map[string]any); !isObj {
		t.Errorf("depth 32 holds %v, want the object", got)
	}
	if bytes.Contains(raw, []byte("jb_backup_redaction-secret")) || bytes.Contains(raw, []byte("gh-secret")) || bytes.Contains(raw, []byte("hunter2")) {
		t.Fatal("a secret survived the snapshot")
	}
	// The emulator itself keeps using the full config.
	expect(t, do(t, e, "GET", "/api/db/vault/tables/tokens?limit=1", ""), 200, `"items":[]`)

	// 0.2.8 writes the same config with secrets verbatim and functions and
	// undefined dropped.
	old := newEmu(t, edgebasetest.Options{Config: &cfg})
	ov, oraw := getConfig(t, old)
	if bytes.Contains(oraw, []byte(edgebasetest.RedactedValue)) || !bytes.Contains(oraw, []byte("jb_backup_redaction-secret")) {
		t.Fatal("the 0.2.8 profile redacted its config")
	}
	for p, want := range map[string]string{"/auth/hooks": "{}", "/databases/workspace/access": "{}", "/storage/buckets/uploads/access": "{}", "/cors": `{"origin":"*"}`} {
		got, _ := pointer(ov, p)
		if b, _ := json.Marshal(got); string(b) != want {
			t.Errorf("0.2.8 %s = %s, want %s", p, b, want)
		}
	}
}

// The helper's JSON is the same as the config's MarshalJSON in 0.2.8.
func TestRedactionConfigMarshalsLikeTheServer(t *testing.T) {
	cfg := edgebasetest.RedactionConfig()
	b, err := cfg.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	e := newEmu(t, edgebasetest.Options{Config: &cfg})
	_, raw := getConfig(t, e)
	if !bytes.Equal(b, raw) {
		t.Fatal("MarshalJSON differs from GET /config of the 0.2.8 profile")
	}
}
