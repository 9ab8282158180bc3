package archive

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
)

// benchDump is a DODump of row-like data of about size bytes.
func benchDump(size int) []byte {
	var b bytes.Buffer
	b.WriteString(`{"doName":"shared","doType":"database","tables":{"posts":[`)
	for i := 0; b.Len() < size; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":"01a212ef-e281-778b-882c-%012d","createdAt":"2026-11-25T13:40:40.720Z","title":"Post number %d about edge databases",`+
			`"body":"Lorem ipsum dolor sit amet, consectetur adipiscing elit \u00e9\u00e8 \"quoted\"","views":%d,"score":%d.25,"published":%d,"deletedAt":null}`,
			i, i, i*7, i%100, i%2)
	}
	b.WriteString(`]},"timestamp":""}`)
	return b.Bytes()
}

// BenchmarkJSONWriterDatabase validates and copies a dump into a document.
func BenchmarkJSONWriterDatabase(b *testing.B) {
	dump := benchDump(16 << 20)
	b.SetBytes(int64(len(dump)))
	for b.Loop() {
		jw, _ := NewJSONWriter(io.Discard, Header{Timestamp: FormatTimestamp(testTime), Source: SourceDocker})
		jw.ControlD1(strings.NewReader(`{}`))
		jw.AuthD1(strings.NewReader(`{}`))
		if _, err := jw.Database("shared", bytes.NewReader(dump)); err != nil {
			b.Fatal(err)
		}
		if err := jw.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReadJSON validates a document, teeing each value to a sink.
func BenchmarkReadJSON(b *testing.B) {
	data := doc(`"x":0`)
	data = bytes.Replace(data, []byte(`"databases":{}`), append(append([]byte(`"databases":{"shared":`), benchDump(16<<20)...), '}'), 1)
	b.SetBytes(int64(len(data)))
	v := &discardVisitor{}
	for b.Loop() {
		if _, err := Read(context.Background(), bytes.NewReader(data), JSON, v); err != nil {
			b.Fatal(err)
		}
	}
}

type discardVisitor struct{ NopVisitor }

func (discardVisitor) BeginValue(context.Context, ValueRef) (io.Writer, error) {
	return io.Discard, nil
}
