package archive

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"testing"
)

func slow(t *testing.T) {
	t.Helper()
	if os.Getenv("EDGEVAULT_SLOW") != "1" {
		t.Skip("slow test; set EDGEVAULT_SLOW=1")
	}
}

// Every cut of an archive or a document is reported as truncated.
func TestSlowTruncationSweep(t *testing.T) {
	slow(t)
	data, _ := writeArchive(t, testObjects())
	for cut := 0; cut < len(data); cut += 61 {
		_, _, err := readBytes(t, data[:cut], TarGz)
		if !errors.Is(err, ErrTruncated) || !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("archive cut at %d of %d: %v", cut, len(data), err)
		}
	}
	js, _ := writeFull(t)
	for cut := range len(js) {
		_, _, err := readBytes(t, js[:cut], JSON)
		if !errors.Is(err, ErrTruncated) {
			t.Fatalf("JSON cut at %d: %v", cut, err)
		}
	}
}

// A document of hundreds of MiB is written and read in bounded memory.
func TestSlowLargeDocumentBoundedMemory(t *testing.T) {
	slow(t)
	const dos, rowsPerDO = 40, 30000 // ~4 MiB per DO, ~160 MiB in all
	dump := func(name string) io.Reader {
		pr, pw := io.Pipe()
		go func() {
			w := bufio.NewWriter(pw)
			fmt.Fprintf(w, `{"doName":%q,"doType":"database","tables":{"items":[`, name)
			for i := range rowsPerDO {
				if i > 0 {
					w.WriteByte(',')
				}
				fmt.Fprintf(w, `{"id":"%s-%d","title":"row %d with some text to make it longer than a few bytes","n":%d.5,"big":9007199254740993,"x":null}`, name, i, i, i)
			}
			w.WriteString(`]},"timestamp":""}`)
			pw.CloseWithError(w.Flush())
		}()
		return pr
	}
	pr, pw := io.Pipe()
	go func() {
		jw, _ := NewJSONWriter(pw, Header{Timestamp: FormatTimestamp(testTime), Source: SourceDocker})
		jw.ControlD1(strings.NewReader(`{}`))
		jw.AuthD1(strings.NewReader(`{}`))
		for d := range dos {
			if _, err := jw.Database(fmt.Sprintf("do%03d", d), dump(fmt.Sprintf("do%03d", d))); err != nil {
				pw.CloseWithError(err)
				return
			}
		}
		pw.CloseWithError(jw.Close())
	}()
	v := &memVisitor{}
	s, err := Read(context.Background(), pr, JSON, v)
	if err != nil {
		t.Fatal(err)
	}
	if s.Rows != dos*rowsPerDO || s.Bytes < 150<<20 {
		t.Fatalf("summary rows %d bytes %d", s.Rows, s.Bytes)
	}
	t.Logf("read %d MiB; peak heap in use %d KiB", s.Bytes>>20, v.peak>>10)
	if v.peak > 32<<20 {
		t.Fatalf("heap in use reached %d MiB", v.peak>>20)
	}
}

type memVisitor struct {
	NopVisitor
	peak uint64
	sink bytes.Buffer
}

func (v *memVisitor) BeginValue(context.Context, ValueRef) (io.Writer, error) {
	v.sink.Reset()
	return io.Discard, nil
}

func (v *memVisitor) EndValue(context.Context, ValueRef, ValueStats) error {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	v.peak = max(v.peak, m.HeapInuse)
	return nil
}
