package archive

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"path"
)

// VerifyStream checks an archive read from r (an object in a bucket, read
// once from start to end) the way Verify checks a file: everything Read
// checks, that the stream holds nothing after the archive, and the
// manifest m when there is one (size, SHA-256 and, for an archive joined
// server-side, every part's SHA-256), all in the same single pass. name is
// the archive's name in reports; its base name decides the format.
func VerifyStream(ctx context.Context, name string, r io.Reader, m *Manifest) (Summary, error) {
	format := DetectFormat(name)
	h := sha256.New()
	var parts *io.PipeWriter
	partsDone := make(chan error, 1)
	w := io.Writer(h)
	if m != nil && len(m.Parts) > 0 {
		pr, pw := io.Pipe()
		parts, w = pw, io.MultiWriter(h, pw)
		go func() {
			err := m.CheckReader(pr)
			pr.CloseWithError(err) // unblocks the writer if the check stopped early
			partsDone <- err
		}()
	}
	counted := &countingWriter{w: w}
	rd := newReader(ctx, nil, format)
	err := rd.read(io.TeeReader(r, counted))
	if err == nil {
		if n, cerr := io.Copy(counted, r); cerr != nil || n != 0 {
			err = fmt.Errorf("archive: verify %s: %d bytes left unread (%v)", name, n, cerr)
		}
	}
	var partsErr error
	if parts != nil {
		parts.Close()
		partsErr = <-partsDone
	}
	s := rd.summary()
	s.File = name
	if err != nil {
		return s, err
	}
	s.SHA256 = hex.EncodeToString(h.Sum(nil))
	if m == nil {
		s.Manifest = "absent"
		return s, nil
	}
	if m.Archive != path.Base(name) {
		s.warn("the manifest names %s, not %s", m.Archive, path.Base(name))
	}
	if err := m.Check(counted.n, s.SHA256); err != nil {
		s.Manifest = "mismatch"
		return s, err
	}
	if partsErr != nil {
		s.Manifest = "mismatch"
		return s, partsErr
	}
	s.Manifest = "ok"
	return s, nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
