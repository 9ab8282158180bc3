package jsonstream

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

type tok struct {
	k Kind
	v string
}

func tokens(t *testing.T, input string, bufSize int) ([]tok, error) {
	t.Helper()
	d := NewDecoderOptions(strings.NewReader(input), Options{BufferSize: bufSize})
	var out []tok
	for {
		k, err := d.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		v := ""
		switch k {
		case Key, String, Number, True, False, Null:
			v = string(d.Bytes())
		}
		out = append(out, tok{k, v})
	}
}

func TestTokens(t *testing.T) {
	input := ` { "a" : [ 1 , -0.5e+10 , 12345678901234567890123 , "x\u00e9\ud83d\ude00\n\"\\\/" , true , false , null ] ,
	  "": {}, "b\u0000": [] } `
	want := []tok{
		{ObjectBegin, ""}, {Key, "a"}, {ArrayBegin, ""},
		{Number, "1"}, {Number, "-0.5e+10"}, {Number, "12345678901234567890123"},
		{String, "x\u00e9\U0001F600\n\"\\/"}, {True, "true"}, {False, "false"}, {Null, "null"},
		{ArrayEnd, ""}, {Key, ""}, {ObjectBegin, ""}, {ObjectEnd, ""},
		{Key, "b\x00"}, {ArrayBegin, ""}, {ArrayEnd, ""}, {ObjectEnd, ""},
	}
	for _, bs := range []int{64, 65, 100, 4096} {
		got, err := tokens(t, input, bs)
		if err != nil {
			t.Fatalf("buf %d: %v", bs, err)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("buf %d:\n got %v\nwant %v", bs, got, want)
		}
	}
}

func TestLoneSurrogatesDecodeLikeEncodingJSON(t *testing.T) {
	for _, in := range []string{`"\ud800"`, `"\udc00x"`, `"\ud800\u0041"`, `"a\ud83d\ude00b"`, `"\ud800\ud800"`} {
		var want string
		if err := json.Unmarshal([]byte(in), &want); err != nil {
			t.Fatal(err)
		}
		got, err := tokens(t, in, 64)
		if err != nil || len(got) != 1 || got[0].v != want {
			t.Fatalf("%s: got %v %v, want %q", in, got, err, want)
		}
	}
}

func TestErrors(t *testing.T) {
	cases := []struct {
		in     string
		sent   error
		offset int64
	}{
		{`{"a":1,}`, ErrSyntax, 7},
		{`[1,]`, ErrSyntax, 3},
		{`{"a" 1}`, ErrSyntax, 5},
		{`{"a":1 "b":2}`, ErrSyntax, 7},
		{`01`, ErrSyntax, 1},
		{`-`, io.ErrUnexpectedEOF, 1},
		{`-a`, ErrSyntax, 1},
		{`1.`, io.ErrUnexpectedEOF, 2},
		{`1.e3`, ErrSyntax, 2},
		{`1e`, io.ErrUnexpectedEOF, 2},
		{`[1e+]`, ErrSyntax, 4},
		{`+1`, ErrSyntax, 0},
		{`.5`, ErrSyntax, 0},
		{`"abc`, io.ErrUnexpectedEOF, 4},
		{"\"a\tb\"", ErrSyntax, 2},
		{"\"a\xffb\"", ErrInvalidUTF8, 2},
		{"\"\xed\xa0\x80\"", ErrInvalidUTF8, 1}, // UTF-8 encoded surrogate
		{"\"\xe2\x82", io.ErrUnexpectedEOF, 3},
		{`"\x"`, ErrSyntax, 2},
		{`"\u12g4"`, ErrSyntax, 5},
		{`"\u12`, io.ErrUnexpectedEOF, 5},
		{`tru`, io.ErrUnexpectedEOF, 3},
		{`trUe`, ErrSyntax, 2},
		{`nul`, io.ErrUnexpectedEOF, 3},
		{``, io.ErrUnexpectedEOF, 0},
		{`   `, io.ErrUnexpectedEOF, 3},
		{`{"a":[1,2]`, io.ErrUnexpectedEOF, 10},
		{`[1] [2]`, ErrSyntax, 4},
		{"\xef\xbb\xbf{}", ErrSyntax, 0}, // byte order mark
		{`{'a':1}`, ErrSyntax, 1},
		{`[NaN]`, ErrSyntax, 1},
		{`{"a":1}}`, ErrSyntax, 7},
	}
	for _, c := range cases {
		for _, bs := range []int{64, 4096} {
			d := NewDecoderOptions(strings.NewReader(c.in), Options{BufferSize: bs})
			err := d.SkipValue()
			if err == nil {
				err = d.End()
			}
			var je *Error
			if !errors.As(err, &je) || !errors.Is(err, c.sent) || je.Offset != c.offset {
				t.Errorf("%q (buf %d): got %v, want %v at offset %d", c.in, bs, err, c.sent, c.offset)
			}
			if c.sent != io.ErrUnexpectedEOF && errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("%q: malformed input reported as truncated", c.in)
			}
			// Errors are sticky.
			if _, err2 := d.Peek(); err2 != err {
				t.Errorf("%q: error not sticky: %v then %v", c.in, err, err2)
			}
		}
	}
}

func TestEveryPrefixOfAContainerIsTruncated(t *testing.T) {
	doc := `{"k\u00e9y":[1,-2.5e-3,"sträng \"q\" \ud83d\ude00",{"n":null,"t":true,"f":false},[]],"z":0}`
	for cut := 0; cut < len(doc); cut++ {
		d := NewDecoderOptions(strings.NewReader(doc[:cut]), Options{BufferSize: 64})
		err := d.SkipValue()
		if !errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, ErrSyntax) {
			t.Fatalf("cut %d (%q): got %v, want truncated", cut, doc[:cut], err)
		}
		var je *Error
		if !errors.As(err, &je) || je.Offset != int64(cut) {
			t.Fatalf("cut %d: offset %v", cut, err)
		}
	}
}

func TestDepthLimit(t *testing.T) {
	deep := strings.Repeat("[", 10) + strings.Repeat("]", 10)
	d := NewDecoderOptions(strings.NewReader(deep), Options{MaxDepth: 10})
	if err := d.SkipValue(); err != nil {
		t.Fatal(err)
	}
	d = NewDecoderOptions(strings.NewReader("["+deep+"]"), Options{MaxDepth: 10})
	if err := d.SkipValue(); !errors.Is(err, ErrDepth) {
		t.Fatalf("got %v, want ErrDepth", err)
	}
}

func TestMaxScalar(t *testing.T) {
	long := `["` + strings.Repeat("x", 100) + `"]`
	d := NewDecoderOptions(strings.NewReader(long), Options{MaxScalar: 50})
	d.Next()
	if _, err := d.Next(); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("got %v, want ErrTooLarge", err)
	}
	// Skipping and copying have no limit.
	d = NewDecoderOptions(strings.NewReader(long), Options{MaxScalar: 50})
	var b bytes.Buffer
	if _, err := d.CopyValue(&b); err != nil || b.String() != long {
		t.Fatalf("copy: %v", err)
	}
}

// A reader that returns one byte per call exercises every refill path.
func TestOneByteReader(t *testing.T) {
	doc := ` {"a\u00e9":[1.5e3,"x\ud83d\ude00y",true,null,{"b":[]}], "c" : "\u20ac"} `
	d := NewDecoderOptions(iotest.OneByteReader(strings.NewReader(doc)), Options{BufferSize: 64})
	var b bytes.Buffer
	n, err := d.CopyValue(&b)
	if err != nil || d.End() != nil {
		t.Fatal(err)
	}
	if want := strings.TrimSpace(doc); b.String() != want || n != int64(len(want)) {
		t.Fatalf("copy %d %q", n, b.String())
	}
}

func TestCopyAndWalk(t *testing.T) {
	// Walk the structure while StartCopy tees it, nesting CopyValue inside.
	doc := `{"rows": [ {"id":1, "blob":{"__blob__":true,"data":"AAE="}} , {} ] , "n" : 1.0}`
	d := NewDecoderOptions(strings.NewReader(doc), Options{BufferSize: 64})
	var all, inner bytes.Buffer
	if err := d.StartCopy(&all); err != nil {
		t.Fatal(err)
	}
	mustNext(t, d, ObjectBegin)
	mustNext(t, d, Key)
	mustNext(t, d, ArrayBegin)
	mustNext(t, d, ObjectBegin)
	mustNext(t, d, Key)
	if err := d.SkipValue(); err != nil {
		t.Fatal(err)
	}
	mustNext(t, d, Key)
	if _, err := d.CopyValue(&inner); err != nil {
		t.Fatal(err)
	}
	mustNext(t, d, ObjectEnd)
	if err := d.SkipValue(); err != nil {
		t.Fatal(err)
	}
	mustNext(t, d, ArrayEnd)
	mustNext(t, d, Key)
	mustNext(t, d, Number)
	if string(d.Bytes()) != "1.0" {
		t.Fatalf("number literal %q", d.Bytes())
	}
	mustNext(t, d, ObjectEnd)
	if err := d.StopCopy(); err != nil {
		t.Fatal(err)
	}
	if all.String() != doc {
		t.Fatalf("tee\n got %s\nwant %s", all.String(), doc)
	}
	if inner.String() != `{"__blob__":true,"data":"AAE="}` {
		t.Fatalf("inner %s", inner.String())
	}
	if err := d.End(); err != nil {
		t.Fatal(err)
	}
}

func mustNext(t *testing.T, d *Decoder, want Kind) {
	t.Helper()
	k, err := d.Next()
	if err != nil || k != want {
		t.Fatalf("Next = %v, %v; want %v", k, err, want)
	}
}

func TestUsageErrors(t *testing.T) {
	d := NewDecoder(strings.NewReader(`{"a":1}`))
	mustNext(t, d, ObjectBegin)
	if err := d.SkipValue(); !errors.Is(err, ErrUsage) {
		t.Fatalf("SkipValue at a key: %v", err)
	}
	if err := d.End(); !errors.Is(err, ErrUsage) {
		t.Fatalf("End inside a value: %v", err)
	}
}

func TestReadErrorIsReported(t *testing.T) {
	boom := errors.New("boom")
	d := NewDecoder(io.MultiReader(strings.NewReader(`[1,`), iotest.ErrReader(boom)))
	if err := d.SkipValue(); !errors.Is(err, boom) {
		t.Fatalf("got %v", err)
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestCopyWriteError(t *testing.T) {
	d := NewDecoder(strings.NewReader(`[1,2,3]`))
	if _, err := d.CopyValue(failWriter{}); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("got %v", err)
	}
}

func TestReset(t *testing.T) {
	d := NewDecoder(strings.NewReader(`[1`))
	if err := d.SkipValue(); err == nil {
		t.Fatal("want error")
	}
	d.Reset(strings.NewReader(`{"x":"y"}`))
	var b bytes.Buffer
	if _, err := d.CopyValue(&b); err != nil || b.String() != `{"x":"y"}` || d.End() != nil {
		t.Fatalf("after reset: %v %q", err, b.String())
	}
}

func TestAppendString(t *testing.T) {
	for in, want := range map[string]string{
		"plain":          `"plain"`,
		"q\"b\\s":        `"q\"b\\s"`,
		"\n\r\t\b\f\x01": `"\n\r\t\b\f\u0001"`,
		"é😀\u2028<>&":    "\"é😀\u2028<>&\"",
		"\x7f":           "\"\x7f\"",
	} {
		got, err := AppendString(nil, in)
		if err != nil || string(got) != want {
			t.Errorf("%q: got %s %v, want %s", in, got, err, want)
		}
		var back string
		if err := json.Unmarshal(got, &back); err != nil || back != in {
			t.Errorf("%q does not round-trip: %q %v", in, back, err)
		}
	}
	if _, err := AppendString(nil, "\xff"); err == nil {
		t.Error("invalid UTF-8 accepted")
	}
}
