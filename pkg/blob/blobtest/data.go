package blobtest

import (
	"crypto/sha256"
	"io"
	"math/rand/v2"
)

// Random returns a reader of n pseudo-random bytes determined by seed, so
// tests can stream large blobs without holding them and compare them by
// digest.
func Random(seed uint64, n int64) io.Reader {
	var s [32]byte
	for i := range 8 {
		s[i] = byte(seed >> (8 * i))
	}
	return io.LimitReader(rand.NewChaCha8(s), n)
}

// Digest is the SHA-256 of Random(seed, n).
func Digest(seed uint64, n int64) [32]byte {
	h := sha256.New()
	_, _ = io.Copy(h, Random(seed, n)) // reads from memory cannot fail
	return [32]byte(h.Sum(nil))
}
