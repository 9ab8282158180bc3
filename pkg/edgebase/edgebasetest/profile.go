package edgebasetest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// Profile selects which EdgeBase server generation the emulator behaves
// like. The zero value is Profile028, the one checked byte for byte
// against a real 0.2.8 server (test/contract).
type Profile int

const (
	// Profile028 is EdgeBase 0.2.8, the version of the peer.
	Profile028 Profile = iota
	// Profile05 adds what 0.4.x-0.5.x servers do differently, as described
	// in the protocol document's Appendix B (read from upstream source, not
	// observed on a server): upload-grant marker keys hidden from the
	// storage listing and kept by the wipe (B.1); content types normalised
	// on put and non-passive types served as octet-stream attachments
	// (B.2); a redacted config snapshot (B.3). Scoped service keys (B.4)
	// behave the same in both profiles, as the peer already enforces them.
	Profile05
)

func (p Profile) String() string {
	switch p {
	case Profile028:
		return "0.2.8"
	case Profile05:
		return "0.5"
	}
	return fmt.Sprintf("Profile(%d)", int(p))
}

// ParseProfile reads a profile name: "0.2.8" (also "0.2" or ""), or
// "0.5" (also "0.5.0", "0.4.2", "0.4": the profile models 0.4.2 onwards,
// the first version with every Appendix B change).
func ParseProfile(s string) (Profile, error) {
	switch strings.TrimPrefix(strings.TrimSpace(s), "v") {
	case "", "0.2", "0.2.8":
		return Profile028, nil
	case "0.4", "0.4.2", "0.5", "0.5.0":
		return Profile05, nil
	}
	return 0, fmt.Errorf("edgebasetest: unknown EdgeBase profile %q (want 0.2.8 or 0.5)", s)
}

// newer reports the 0.4+/0.5 behaviour.
func (e *Emulator) newer() bool { return e.opts.Profile == Profile05 }

// ─── B.1 internal storage keys ───

// UploadGrantPrefix is where EdgeBase 0.4+ keeps its single-use upload
// grant markers: <prefix><13-digit expiry in ms>/<32 hex>.
const UploadGrantPrefix = "__edgebase_internal__/signed-upload-grants/"

func isUploadGrant(key string) bool { return strings.HasPrefix(key, UploadGrantPrefix) }

// internalKeyRefused is the answer of Profile05 to a backup-API read or
// write of a grant marker. Appendix B.1 only says to expect a 400; the
// message is the emulator's own.
func internalKeyRefused(key string) *response {
	return errorResponse(400, "Key is reserved for internal use: "+key)
}

// AddUploadGrants stores n upload-grant markers the way a 0.4+ server's
// signed-upload route does (empty or tiny bodies, custom metadata, an
// expiry 15 minutes after the emulator's clock) and returns their keys.
// They are plain objects to a Profile028 emulator, which is what an
// archive taken from a 0.2.8 server after a downgrade, or by a client
// unaware of them, would hold.
func (e *Emulator) AddUploadGrants(ctx context.Context, n int) ([]string, error) {
	now := e.now()
	expiry := now.Add(15 * time.Minute).UnixMilli()
	keys := make([]string, 0, n)
	for i := 0; i < n; i++ {
		sum := sha256.Sum256(fmt.Appendf(nil, "%s/grant/%d/%d", e.worker, expiry, i))
		key := fmt.Sprintf("%s%013d/%s", UploadGrantPrefix, expiry, hex.EncodeToString(sum[:16]))
		var body []byte
		if i%2 == 1 {
			body = []byte("1")
		}
		o, err := e.r2.put(ctx, key, "", strings.NewReader(string(body)), now)
		if err != nil {
			return keys, fmt.Errorf("edgebasetest: add upload grant: %w", err)
		}
		o.Custom = object{{"bucket", "uploads"}, {"key", fmt.Sprintf("f/granted-%d.bin", i)}, {"maxSize", "1048576"}, {"expiresAt", isoTime(time.UnixMilli(expiry))}}
		if err := e.r2.insert(ctx, o); err != nil {
			return keys, fmt.Errorf("edgebasetest: add upload grant: %w", err)
		}
		keys = append(keys, key)
	}
	return keys, nil
}

// ─── B.2 content types ───

var mediaType = regexp.MustCompile("^[a-z0-9!#$%&'*+.^_`|~-]+/[a-z0-9!#$%&'*+.^_`|~-]+$")

// normalizeContentType is what a 0.4+ server stores for a content type:
// lower-cased, parameters dropped, application/octet-stream for a missing
// or malformed one.
func normalizeContentType(ct string) string {
	mt, _, _ := strings.Cut(ct, ";")
	mt = strings.ToLower(strings.TrimSpace(mt))
	if !mediaType.MatchString(mt) {
		return "application/octet-stream"
	}
	return mt
}

// passiveTypes are served with their own type by a 0.4+ server; Appendix
// B.2 lists the raster images, fonts, text/plain and text/vtt by name and
// "common audio and video types" without a list, so those are a choice.
var passiveTypes = map[string]bool{
	"image/avif": true, "image/bmp": true, "image/gif": true, "image/heic": true, "image/heif": true,
	"image/jpeg": true, "image/png": true, "image/tiff": true, "image/x-icon": true,
	"image/vnd.microsoft.icon": true, "image/webp": true,
	"audio/aac": true, "audio/flac": true, "audio/mp4": true, "audio/mpeg": true, "audio/ogg": true,
	"audio/opus": true, "audio/wav": true, "audio/wave": true, "audio/x-wav": true, "audio/webm": true,
	"video/mp4": true, "video/mpeg": true, "video/ogg": true, "video/quicktime": true, "video/webm": true,
	"font/collection": true, "font/otf": true, "font/ttf": true, "font/woff": true, "font/woff2": true,
	"text/plain": true, "text/vtt": true,
}

// SandboxCSP is the Content-Security-Policy of a masked download.
const SandboxCSP = "default-src 'none'; sandbox"

// serveType sets the headers a 0.4+ server sends with an object's bytes:
// its normalised type if passive, otherwise an octet-stream attachment.
func serveType(h map[string][]string, key, stored string) {
	ct := normalizeContentType(stored)
	if passiveTypes[ct] {
		h["Content-Type"] = []string{ct}
		return
	}
	h["Content-Type"] = []string{"application/octet-stream"}
	h["Content-Disposition"] = []string{attachment(key)}
	h["Content-Security-Policy"] = []string{SandboxCSP}
}

// attachment is the Content-Disposition of a download named after the
// key's last segment, with an RFC 5987 form for non-ASCII names.
func attachment(key string) string {
	name := key[strings.LastIndexByte(key, '/')+1:]
	if name == "" {
		name = "download"
	}
	plain := true
	ascii := []byte(name)
	for i := range ascii {
		if c := ascii[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			plain = false
			ascii[i] = '_'
		}
	}
	if plain {
		return `attachment; filename="` + name + `"`
	}
	return `attachment; filename="` + string(ascii) + `"; filename*=UTF-8''` + rfc5987(name)
}

// rfc5987 percent-encodes everything but attr-char.
func rfc5987(s string) string {
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$&+-.^_`|~", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&15])
	}
	return b.String()
}

// ─── B.3 redacted config ───

// RedactionConfig is DefaultConfig plus values in every position the
// 0.4.2+ snapshot withholds (Appendix B.3), so a Profile05 emulator
// answers GET /config with RedactedValue where a string, number, object,
// array, boolean, function and undefined stood: a table named tokens and
// a DB block named secrets (whole objects), a password field definition,
// a boolean schema default and examples (array), plugin and extension
// configs, credential-named members holding strings, objects, arrays and
// booleans, secret-looking strings under harmless names (JWT, sk_live_,
// PEM private key, URL with a password), functions and undefined, a
// chain nested deeper than 32 levels and, last, an array that takes the
// config past 20,000 values. The blocks stay usable: the emulator itself
// reads the full config.
func RedactionConfig() Config {
	c := DefaultConfig()
	c.Databases = append(c.Databases,
		Database{Name: "vault", Provider: "do", Tables: []Table{
			{Name: "tokens", Schema: []Field{{Name: "value", Type: "string"}}},
			{Name: "accounts", Schema: []Field{
				{Name: "name", Type: "string", Default: json.RawMessage(`"anon"`), Examples: json.RawMessage(`["ada","grace"]`)},
				{Name: "password", Type: "string"},
				{Name: "active", Type: "boolean", Default: json.RawMessage(`false`)},
				{Name: "signupUrl", Type: "string", Default: json.RawMessage(`"https://admin:hunter2@example.com/signup"`)},
			}},
		}},
		Database{Name: "secrets", Tables: []Table{{Name: "notes", Schema: []Field{{Name: "body", Type: "text"}}}}},
	)
	c.Auth = json.RawMessage(`{"emailAuth":true,"oauth":{"github":{"clientId":"Iv1.0123","clientSecret":"gh-secret"}},` +
		`"session":{"cookie":{"secure":true,"sameSite":"lax"},"refreshTokens":true},"allowedRedirects":["https://app.example.com/cb","https://user:pw@example.com/cb"]}`)
	c.ServiceKeys = append(c.ServiceKeys,
		ServiceKey{Kid: "backup", Tier: "scoped", Scopes: []string{"backup:*:*:exec"}, SecretSource: "inline", InlineSecret: "jb_backup_redaction-secret"})
	deep := strings.Repeat(`{"level":`, 40) + `"bottom"` + strings.Repeat(`}`, 40)
	var bulk strings.Builder
	bulk.WriteString("[")
	for i := 0; i < maxRedactNodes+100; i++ {
		if i > 0 {
			bulk.WriteString(",")
		}
		fmt.Fprintf(&bulk, "%d", i)
	}
	bulk.WriteString("]")
	c.Extra = append(c.Extra,
		RawMember{"plugins", json.RawMessage(`{"stripe":{"version":"1.2.0","config":{"webhook":"whsec_x","mode":"live"}}}`)},
		RawMember{"extensions", json.RawMessage(`{"search":{"enabled":true,"config":["title","body"]}}`)},
		RawMember{"email", json.RawMessage(`{"smtp":{"host":"smtp.example.com","port":587,"password":"pw"}}`)},
		RawMember{"apiKeys", json.RawMessage(`["k1","k2"]`)},
		RawMember{"cloudflare", json.RawMessage(`{"accountId":"0123456789abcdef","credentials":false,"zone":"example.com"}`)},
		RawMember{"licenseKey", json.RawMessage(`12345`)},
		RawMember{"integrations", json.RawMessage(`{"webhookJwt":"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl","stripe":"sk_live_abc123",` +
			`"tls":"-----BEGIN PRIVATE KEY-----\nMIIBVQ\n-----END PRIVATE KEY-----\n","mirror":"postgres://app:pass@db.example.com/app","public":"https://example.com/x"}`)},
		RawMember{"deep", json.RawMessage(deep)},
		RawMember{"bulk", json.RawMessage(bulk.String())},
	)
	c.Functions = []string{"auth.hooks.beforeSignUp"}
	c.Undefined = []string{"cors.maxAge"}
	return c
}
