package edgebase

import (
	"mime"
	"net/http"
	"strings"
)

// InternalKeyPrefix is the R2 key prefix EdgeBase keeps for its own state.
// Since 0.4.0 the server stores single-use upload-grant markers under
// UploadGrantPrefix; they are not user data.
const (
	InternalKeyPrefix = "__edgebase_internal__/"
	UploadGrantPrefix = InternalKeyPrefix + "signed-upload-grants/"
)

// IsInternalKey reports whether an R2 key belongs to the server itself
// (anything under __edgebase_internal__/, e.g. upload-grant markers).
// Such keys are never backed up; a restore skips them with a notice,
// because newer servers refuse to read or write them (400).
//
// The protocol names only the upload-grant markers; the whole prefix is
// taken as reserved because the server owns its name, and no logical
// bucket of a deployment can be called __edgebase_internal__ without
// colliding with it.
func IsInternalKey(key string) bool { return strings.HasPrefix(key, InternalKeyPrefix) }

// IsUploadGrantKey reports whether key is an upload-grant marker
// (<UploadGrantPrefix><13-digit expiry ms>/<32 hex>, or any key under
// that prefix).
func IsUploadGrantKey(key string) bool { return strings.HasPrefix(key, UploadGrantPrefix) }

// DefaultContentType is what R2 and EdgeBase assume for an object without
// a (valid) type.
const DefaultContentType = "application/octet-stream"

// NormalizeContentType returns the form EdgeBase 0.4+ stores for a
// content type: lower-cased, parameters (; charset=...) dropped, and
// DefaultContentType for a missing or malformed type. Compare types of a
// round trip in this form: a newer server stores the normalised form of
// what was sent.
func NormalizeContentType(ct string) string {
	mt, _, _ := strings.Cut(ct, ";")
	mt = strings.ToLower(strings.TrimSpace(mt))
	typ, sub, ok := strings.Cut(mt, "/")
	if !ok || !isToken(typ) || !isToken(sub) {
		return DefaultContentType
	}
	return mt
}

// isToken reports an RFC 7230 token (what a media type and subtype are).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// masked reports a storage reply that hides the object's type: EdgeBase
// 0.4+ serves every type outside its passive list (HTML, SVG, JSON, PDF,
// ...) as an application/octet-stream attachment, so the stored type
// cannot be read from the reply.
func masked(h http.Header) bool {
	cd := h.Get("Content-Disposition")
	if cd == "" {
		return false
	}
	disp, _, err := mime.ParseMediaType(cd)
	if err != nil {
		// A header the parser rejects (an unquoted odd file name, say) still
		// says what it is in its first token.
		disp, _, _ = strings.Cut(cd, ";")
		disp = strings.ToLower(strings.TrimSpace(disp))
	}
	return disp == "attachment" && NormalizeContentType(h.Get("Content-Type")) == DefaultContentType
}
