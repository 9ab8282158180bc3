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

// ErrExist is returned (wrapped) by Create when the key is already present.
var ErrExist = errors.New("blob: already exists")
