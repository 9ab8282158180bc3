package archive

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"time"
)

var testTime = time.Date(2026, 3, 7, 10, 0, 5, 123e6, time.UTC)

// capture is a Visitor that keeps everything it is given.
type capture struct {
	header  Header
	headers int
	raw     map[string]*bytes.Buffer // ValueRef.String() -> raw bytes
	order   []string
	refs    []ValueRef
	stats   map[string]ValueStats
	objects []Object
	members map[string][]byte // key -> bytes
	mnames  map[string]Member
}

func newCapture() *capture {
	return &capture{raw: map[string]*bytes.Buffer{}, stats: map[string]ValueStats{}, members: map[string][]byte{}, mnames: map[string]Member{}}
}

func (c *capture) Header(_ context.Context, h Header) error {
	c.header = h
	c.headers++
	return nil
}

func (c *capture) BeginValue(_ context.Context, ref ValueRef) (io.Writer, error) {
	b := &bytes.Buffer{}
	c.raw[ref.String()] = b
	c.order = append(c.order, ref.String())
	c.refs = append(c.refs, ref)
	return b, nil
}

func (c *capture) EndValue(_ context.Context, ref ValueRef, s ValueStats) error {
	c.stats[ref.String()] = s
	return nil
}

func (c *capture) StorageObject(_ context.Context, o Object) error {
	c.objects = append(c.objects, o)
	return nil
}

func (c *capture) StorageMember(_ context.Context, m Member, r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if int64(len(b)) != m.Size {
		return errors.New("member reader gave a wrong length")
	}
	c.members[m.Key] = b
	c.mnames[m.Key] = m
	return nil
}

func readBytes(t *testing.T, data []byte, f Format) (*capture, Summary, error) {
	t.Helper()
	c := newCapture()
	s, err := Read(context.Background(), bytes.NewReader(data), f, c)
	return c, s, err
}

func mustRead(t *testing.T, data []byte, f Format) (*capture, Summary) {
	t.Helper()
	c, s, err := readBytes(t, data, f)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	return c, s
}

// wantErr asserts err is an *Error wrapping sentinel whose text contains
// every part.
func wantErr(t *testing.T, err error, sentinel error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one containing %q", parts)
	}
	var ae *Error
	if !errors.As(err, &ae) {
		t.Fatalf("error %T %v is not an *archive.Error", err, err)
	}
	if sentinel != nil && !errors.Is(err, sentinel) {
		t.Fatalf("error %v does not wrap %v", err, sentinel)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Fatalf("error %q does not contain %q", err, p)
		}
	}
}

const (
	hdrJSON   = `"version":"1.1","timestamp":"2026-03-07T10:00:05.123Z","source":"docker"`
	coreJSON  = `"control":{"d1":{"_meta":[]}},"auth":{"d1":{"_users":[]},"shards":{}},"databases":{}`
	emptyDump = `{"doName":"shared","doType":"database","tables":{},"timestamp":""}`
)

// doc returns a minimal valid document with extra top-level members.
func doc(extra string) []byte {
	s := "{" + hdrJSON + "," + coreJSON
	if extra != "" {
		s += "," + extra
	}
	return []byte(s + "}")
}

type tarEntry struct {
	hdr  tar.Header
	body []byte
}

func reg(name string, body string) tarEntry {
	return tarEntry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Size: int64(len(body)), Mode: 0o644}, body: []byte(body)}
}

// buildTarGz writes entries as one gzip member, with or without the tar
// end-of-archive blocks.
func buildTarGz(t *testing.T, entries []tarEntry, end bool) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, e := range entries {
		h := e.hdr
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(e.body); err != nil {
			t.Fatal(err)
		}
	}
	var err error
	if end {
		err = tw.Close()
	} else {
		err = tw.Flush()
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// samplesDir is where backups written by the official CLI are kept
// (EDGEVAULT_PEER_SAMPLES, default: the peer kit's samples directory next
// to the checkout).
func samplesDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("EDGEVAULT_PEER_SAMPLES")
	if dir == "" {
		dir = "../../../shared/peer/samples"
	}
	if _, err := os.Stat(dir); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("official CLI samples not found at %s (set EDGEVAULT_PEER_SAMPLES): %v", dir, err)
		}
		t.Skipf("official CLI samples not found at %s (set EDGEVAULT_PEER_SAMPLES); skipping the golden test", dir)
	}
	return dir
}

// buildTarGzRaw writes a complete tar followed by extra bytes inside the
// same gzip member.
func buildTarGzRaw(t *testing.T, entries []tarEntry, extra []byte) []byte {
	t.Helper()
	var tarBuf bytes.Buffer
	tw := tar.NewWriter(&tarBuf)
	for _, e := range entries {
		h := e.hdr
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		tw.Write(e.body)
	}
	tw.Close()
	tarBuf.Write(extra)
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(tarBuf.Bytes())
	zw.Close()
	return buf.Bytes()
}
