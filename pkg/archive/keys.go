package archive

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Storage members live under storage/. An R2 key that is not safe as a
// relative file path (spec 8.6) cannot be stored as storage/<key>: it could
// escape the directory on extraction, collide with another key, or not be
// creatable at all. Such keys are stored under
//
//	storage/.edgevault-escaped/<encoded key>=
//
// where the encoding percent-encodes (%XX, upper-case hex) every byte of the
// key except ASCII letters, digits, '-', '_' and '~' — so '/', '.' and '%'
// are always encoded — and cuts the result into 200-byte path components.
// The trailing '=' keeps one escaped key's file from ever being another's
// directory. The mapping is deterministic and reversible, so a reader gets
// the exact key back from the member name alone; writers also record the
// member name in the object's "path" field. Keys beginning with the
// ".edgevault-escaped" segment are themselves escaped, so the namespace is
// unambiguous. The official CLI's restore would upload such members under
// their escaped name.
const (
	storagePrefix   = "storage/"
	escapedDir      = ".edgevault-escaped"
	escapedChunk    = 200
	escapedEnd      = "="
	maxSegmentBytes = 255 // NAME_MAX on common file systems
)

// ObjectPath returns the tar member name for an R2 key and whether the key
// had to be escaped (see the package's key safety rules above). A key is
// stored as storage/<key> when it is non-empty valid UTF-8 without a leading
// or trailing '/', empty, '.' or '..' segments, NUL or backslash, with
// segments of at most 255 bytes, and does not start with the reserved
// ".edgevault-escaped" segment.
func ObjectPath(key string) (name string, escaped bool) {
	if safeKey(key) {
		return storagePrefix + key, false
	}
	return storagePrefix + escapedDir + "/" + escapeKey(key), true
}

func safeKey(key string) bool {
	if key == "" || !utf8.ValidString(key) || strings.ContainsAny(key, "\x00\\") {
		return false
	}
	first := true
	for seg := range strings.SplitSeq(key, "/") {
		if seg == "" || seg == "." || seg == ".." || len(seg) > maxSegmentBytes || first && seg == escapedDir {
			return false
		}
		first = false
	}
	return true
}

func unreserved(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '~'
}

func escapeKey(key string) string {
	const hex = "0123456789ABCDEF"
	enc := make([]byte, 0, len(key)*3)
	for i := 0; i < len(key); i++ {
		if c := key[i]; unreserved(c) {
			enc = append(enc, c)
		} else {
			enc = append(enc, '%', hex[c>>4], hex[c&15])
		}
	}
	var b strings.Builder
	for len(enc) > escapedChunk {
		b.Write(enc[:escapedChunk])
		b.WriteByte('/')
		enc = enc[escapedChunk:]
	}
	b.Write(enc)
	b.WriteString(escapedEnd)
	return b.String()
}

// KeyFromPath maps a storage member name back to its R2 key: storage/<key>,
// or the decoded key of an escaped name (reporting escaped). The name must
// already be clean (no "./", "..", or empty segments).
func KeyFromPath(name string) (key string, escaped bool, err error) {
	rest, ok := strings.CutPrefix(name, storagePrefix)
	if !ok || rest == "" {
		return "", false, fmt.Errorf("archive: member %q is not under %s", name, storagePrefix)
	}
	enc, ok := strings.CutPrefix(rest, escapedDir+"/")
	if !ok {
		if rest == escapedDir {
			return "", false, fmt.Errorf("archive: member %q is not an escaped key", name)
		}
		return rest, false, nil
	}
	key, err = unescapeKey(enc)
	if err != nil {
		return "", false, fmt.Errorf("archive: member %q: %w", name, err)
	}
	return key, true, nil
}

func unescapeKey(enc string) (string, error) {
	body, ok := strings.CutSuffix(enc, escapedEnd)
	if !ok {
		return "", fmt.Errorf("escaped key does not end with %q", escapedEnd)
	}
	parts := strings.Split(body, "/")
	for i, p := range parts {
		if i < len(parts)-1 && len(p) != escapedChunk || i == len(parts)-1 && len(p) > escapedChunk {
			return "", fmt.Errorf("escaped key has a malformed %d-byte component", len(p))
		}
	}
	joined := strings.Join(parts, "")
	key := make([]byte, 0, len(joined))
	for i := 0; i < len(joined); i++ {
		c := joined[i]
		if c != '%' {
			if !unreserved(c) {
				return "", fmt.Errorf("escaped key contains %q", c)
			}
			key = append(key, c)
			continue
		}
		if i+2 >= len(joined) {
			return "", fmt.Errorf("escaped key ends inside an escape")
		}
		hi, lo := unhex(joined[i+1]), unhex(joined[i+2])
		if hi < 0 || lo < 0 {
			return "", fmt.Errorf("escaped key has an invalid escape %q", joined[i:i+3])
		}
		key = append(key, byte(hi<<4|lo))
		i += 2
	}
	k := string(key)
	// Only the canonical spelling of a key that needs escaping is accepted,
	// so one key has exactly one member name.
	if !utf8.ValidString(k) || safeKey(k) || escapeKey(k) != enc {
		return "", fmt.Errorf("escaped key is not canonical")
	}
	return k, nil
}

func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'A' && c <= 'F':
		return int(c - 'A' + 10)
	}
	return -1
}
