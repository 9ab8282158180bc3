package blob

import (
	"errors"
	"fmt"
	"strings"
)

// ErrNotExist is returned (wrapped) by every adapter when a key is absent.
var ErrNotExist = errors.New("blob: not found")

// Info describes one stored blob.
type Info struct {
	Key  string
	Size int64
}

// ValidateKey rejects keys that could escape an adapter's root or that
// different adapters would interpret differently.
func ValidateKey(key string) error {
	switch {
	case key == "":
		return errors.New("blob: empty key")
	case strings.HasPrefix(key, "/"), strings.HasSuffix(key, "/"):
		return fmt.Errorf("blob: key %q must not start or end with '/'", key)
	case strings.ContainsRune(key, 0), strings.Contains(key, "\\"):
		return fmt.Errorf("blob: key %q contains NUL or backslash", key)
	}
	for _, seg := range strings.Split(key, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("blob: key %q has an empty, '.' or '..' segment", key)
		}
	}
	return nil
}

// ValidatePrefix accepts "" and any prefix of a valid key (what List
// takes).
func ValidatePrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	if err := ValidateKey(prefix + "x"); err != nil {
		return fmt.Errorf("invalid prefix %q: %w", prefix, err)
	}
	return nil
}

// ErrExist is returned (wrapped) by Create when the key is already present.
var ErrExist = errors.New("blob: already exists")

// ErrLocked is returned (wrapped) by Delete when the store refuses to
// remove the blob: it is under retention (an R2 bucket lock, an S3 Object
// Lock on the version deleted) or a policy forbids deleting it. The blob
// is still there; deleting it again later may succeed.
var ErrLocked = errors.New("blob: delete refused (locked or protected)")

// ErrConflict is returned (wrapped) by Replace when the blob is no longer
// the version the caller read (another writer came first, or it is gone).
var ErrConflict = errors.New("blob: changed since it was read")

// Version identifies one stored content of a key: an S3 ETag, a file's
// identity. Two reads return the same Version only if nothing replaced
// the blob in between. It is opaque to callers.
type Version string
