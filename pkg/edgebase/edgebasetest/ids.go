package edgebasetest

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"strings"
)

var (
	base64Std = base64.StdEncoding
	base64Raw = base64.RawStdEncoding
)

// doIDFactory computes Durable Object ids the way workerd does for a local
// namespace: idFromName = HMAC-SHA256(key, name)[:16] followed by a 16-byte
// MAC of that half, with key = SHA-256("<worker>-<class>"). The emulator
// therefore names its DO files exactly like the peer does for the same
// worker name.
type doIDFactory struct {
	key []byte
}

func newDOIDFactory(worker, class string) doIDFactory {
	k := sha256.Sum256([]byte(worker + "-" + class))
	return doIDFactory{key: k[:]}
}

func (f doIDFactory) mac(b []byte) []byte {
	m := hmac.New(sha256.New, f.key)
	m.Write(b)
	return m.Sum(nil)[:16]
}

// fromName returns the 64-hex id for name.
func (f doIDFactory) fromName(name string) string {
	base := f.mac([]byte(name))
	return hex.EncodeToString(append(base, f.mac(base)...))
}

// valid reports whether hexID is an id of this namespace (idFromString
// accepts it): 64 hex digits whose second half is the MAC of the first.
func (f doIDFactory) valid(hexID string) bool {
	if len(hexID) != 64 || strings.ToLower(hexID) != hexID {
		return false
	}
	b, err := hex.DecodeString(hexID)
	if err != nil {
		return false
	}
	return hmac.Equal(b[16:], f.mac(b[:16]))
}

// DOID returns the hex id workerd gives the DatabaseDO named name for a
// worker (script) called worker.
func DOID(worker, name string) string {
	return newDOIDFactory(worker, "DatabaseDO").fromName(name)
}

// ObjectID returns the hex id workerd gives the Durable Object named name
// of class (e.g. "AuthDO") for a worker called worker.
func ObjectID(worker, class, name string) string {
	return newDOIDFactory(worker, class).fromName(name)
}
