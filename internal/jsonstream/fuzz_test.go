package jsonstream

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"testing"
	"unicode/utf8"
)

var fuzzSeeds = []string{
	`{}`, `[]`, `""`, `0`, `-0.0e-0`, `1E+2`, `true`, ` null `, `[1,2,[3,{"a":"b"}]]`,
	`{"a":{"b":[{"c":"\u00e9\ud83d\ude00\n"}]}}`, `{"a":1,}`, `[01]`, `"\ud800"`, "\"\xff\"",
	`{"__blob__":true,"data":"AAE="}`, `[1e400]`, `12345678901234567890123456789`, `[-]`, `{"a" "b"}`,
	"[\"\t\"]", `"\/"`, `[1,2`, `{"x":[{"id":1,"v":null}]} x`,
}

// FuzzValid checks the decoder's verdict against encoding/json.Valid. The
// only allowed differences are the ones jsonstream adds on purpose: invalid
// UTF-8 in strings and nesting deeper than MaxDepth are errors here. A valid
// document's copy must equal its bytes without the surrounding whitespace.
func FuzzValid(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		d := NewDecoderOptions(bytes.NewReader(data), Options{BufferSize: 64, MaxDepth: 64})
		var out bytes.Buffer
		_, err := d.CopyValue(&out)
		if err == nil {
			err = d.End()
		}
		std := json.Valid(data)
		switch {
		case err == nil && !std:
			t.Fatalf("accepted invalid JSON %q", data)
		case err != nil && std:
			if errors.Is(err, ErrInvalidUTF8) && !utf8.Valid(data) || errors.Is(err, ErrDepth) {
				return
			}
			t.Fatalf("rejected valid JSON %q: %v", data, err)
		case err == nil:
			if !bytes.Equal(out.Bytes(), bytes.Trim(data, " \t\r\n")) {
				t.Fatalf("copy of %q is %q", data, out.Bytes())
			}
		default:
			var je *Error
			if !errors.As(err, &je) || je.Offset < 0 || je.Offset > int64(len(data)) {
				t.Fatalf("bad error for %q: %v", data, err)
			}
			if errors.Is(err, io.ErrUnexpectedEOF) && je.Offset != int64(len(data)) {
				t.Fatalf("truncation reported before the end of %q: %v", data, err)
			}
		}
	})
}

// FuzzTokens checks decoded keys, strings and number literals against
// encoding/json's token stream for every document both accept.
func FuzzTokens(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if !json.Valid(data) || !utf8.Valid(data) {
			return
		}
		std := json.NewDecoder(bytes.NewReader(data))
		std.UseNumber()
		d := NewDecoderOptions(bytes.NewReader(data), Options{BufferSize: 64, MaxDepth: 10000})
		for {
			k, err := d.Next()
			if err == io.EOF {
				if _, err := std.Token(); err != io.EOF {
					t.Fatalf("%q: encoding/json has more tokens", data)
				}
				return
			}
			if err != nil {
				t.Fatalf("%q: %v", data, err)
			}
			want, err := std.Token()
			if err != nil {
				t.Fatalf("%q: encoding/json: %v", data, err)
			}
			var got any
			switch k {
			case ObjectBegin:
				got = json.Delim('{')
			case ObjectEnd:
				got = json.Delim('}')
			case ArrayBegin:
				got = json.Delim('[')
			case ArrayEnd:
				got = json.Delim(']')
			case Key, String:
				got = string(d.Bytes())
			case Number:
				got = json.Number(d.Bytes())
			case True, False:
				got = k == True
			case Null:
				got = nil
			}
			if got != want {
				t.Fatalf("%q: token %v %#v, encoding/json %#v", data, k, got, want)
			}
		}
	})
}
