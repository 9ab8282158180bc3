package jsonstream

import (
	"fmt"
	"unicode/utf8"
)

const hexLower = "0123456789abcdef"

// AppendString appends s as a JSON string the way JavaScript's
// JSON.stringify writes it: only '"', '\\' and control characters are
// escaped, everything else stays literal UTF-8. Invalid UTF-8 is an error
// because it has no JSON spelling that round-trips.
func AppendString(dst []byte, s string) ([]byte, error) {
	if !utf8.ValidString(s) {
		// The string itself stays out of the message: it may be a secret.
		return dst, fmt.Errorf("jsonstream: a %d-byte string is not valid UTF-8", len(s))
	}
	dst = append(dst, '"')
	run := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		dst = append(dst, s[run:i]...)
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\b':
			dst = append(dst, '\\', 'b')
		case '\f':
			dst = append(dst, '\\', 'f')
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hexLower[c>>4], hexLower[c&0xf])
		}
		run = i + 1
	}
	dst = append(dst, s[run:]...)
	return append(dst, '"'), nil
}
