// Package jsonstream is a strict (RFC 8259) streaming JSON tokenizer for
// documents far larger than memory. A Decoder pulls tokens from an io.Reader
// through its own fixed buffer, rejects invalid UTF-8 and over-deep nesting,
// and reports errors with their byte offset, telling truncated input
// (io.ErrUnexpectedEOF) apart from malformed input (ErrSyntax). Numbers are
// kept as their literal text, never converted to float64, and whole values
// can be skipped or copied byte-for-byte to a writer while being validated,
// which is how edgevault moves multi-GiB backup sections without decoding
// them.
package jsonstream
