package jsonstream

import (
	"bytes"
	"fmt"
	"io"
	"testing"
)

// rowDoc builds a DO-dump-like document of about size bytes: one table of
// rows with ids, timestamps, text, integers, floats, booleans and nulls.
func rowDoc(size int) []byte {
	var b bytes.Buffer
	b.WriteString(`{"doName":"shared","doType":"database","tables":{"posts":[`)
	for i := 0; b.Len() < size; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":"01a212ef-e281-778b-882c-%012d","createdAt":"2026-11-25T13:40:40.720Z",`+
			`"title":"Post number %d about edge databases","body":"Lorem ipsum dolor sit amet, consectetur adipiscing elit \u00e9\u00e8 \"quoted\"",`+
			`"views":%d,"score":%d.25,"published":%v,"deletedAt":null,"big":9007199254740993}`,
			i, i, i*7, i%100, i%2 == 0)
	}
	b.WriteString(`]},"timestamp":"2026-11-25T13:40:44.850Z"}`)
	return b.Bytes()
}

func benchDoc(b *testing.B, fn func(d *Decoder) error) {
	doc := rowDoc(16 << 20)
	b.SetBytes(int64(len(doc)))
	b.ReportAllocs()
	d := NewDecoder(nil)
	r := bytes.NewReader(nil)
	for b.Loop() {
		r.Reset(doc)
		d.Reset(r)
		if err := fn(d); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCopyValue is the validate+copy path used for raw backup sections.
func BenchmarkCopyValue(b *testing.B) {
	benchDoc(b, func(d *Decoder) error {
		_, err := d.CopyValue(io.Discard)
		return err
	})
}

func BenchmarkSkipValue(b *testing.B) {
	benchDoc(b, func(d *Decoder) error { return d.SkipValue() })
}

// BenchmarkNext decodes every key and scalar.
func BenchmarkNext(b *testing.B) {
	benchDoc(b, func(d *Decoder) error {
		for {
			if _, err := d.Next(); err == io.EOF {
				return nil
			} else if err != nil {
				return err
			}
		}
	})
}
