package edgebasetest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The peer is JavaScript: every JSON body it writes comes from
// JSON.stringify and every body it reads goes through JSON.parse. The helpers
// here reproduce both closely enough that dumps from the emulator are
// byte-identical to the peer's for the same rows (numbers as doubles, no
// HTML escaping, U+2028/2029 left alone, key order preserved).

// kv is one member of an ordered JSON object.
type kv struct {
	Key   string
	Value any
}

// object is an ordered JSON object. Values are nil, bool, float64, string,
// []any, object, rawJSON or blobValue.
type object []kv

func (o object) get(key string) (any, bool) {
	for _, e := range o {
		if e.Key == key {
			return e.Value, true
		}
	}
	return nil, false
}

// rawJSON is written verbatim.
type rawJSON []byte

// jsFunction and jsUndefined stand for config values JSON cannot carry.
// Like JSON.stringify, writeJS drops object members holding them and
// writes null in arrays; the 0.4+ config snapshot redacts them instead.
type (
	jsFunction  struct{}
	jsUndefined struct{}
)

func opaque(v any) bool {
	switch v.(type) {
	case jsFunction, jsUndefined:
		return true
	}
	return false
}

// d1Blob is a BLOB read from D1: the peer serializes it as an array of byte
// values.
type d1Blob []byte

// doBlob is a BLOB read from a Durable Object: the peer wraps it.
type doBlob []byte

// jsNumber formats f like Number.prototype.toString.
func jsNumber(f float64) string {
	switch {
	case math.IsNaN(f) || math.IsInf(f, 0):
		return "null" // JSON.stringify writes null for non-finite numbers
	case f == 0:
		return "0"
	}
	abs := math.Abs(f)
	if abs >= 1e21 || abs < 1e-6 {
		s := strconv.FormatFloat(f, 'e', -1, 64) // e.g. 1e+21, 1.5e-07
		mant, exp, _ := strings.Cut(s, "e")
		sign := exp[0]
		exp = strings.TrimLeft(exp[1:], "0")
		if exp == "" {
			exp = "0"
		}
		return mant + "e" + string(sign) + exp
	}
	return strconv.FormatFloat(f, 'f', -1, 64)
}

// jsString appends s as JSON.stringify would.
func jsString(buf *bytes.Buffer, s string) {
	buf.WriteByte('"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch c {
			case '"':
				buf.WriteString(`\"`)
			case '\\':
				buf.WriteString(`\\`)
			case '\b':
				buf.WriteString(`\b`)
			case '\f':
				buf.WriteString(`\f`)
			case '\n':
				buf.WriteString(`\n`)
			case '\r':
				buf.WriteString(`\r`)
			case '\t':
				buf.WriteString(`\t`)
			default:
				if c < 0x20 {
					fmt.Fprintf(buf, `\u%04x`, c)
				} else {
					buf.WriteByte(c)
				}
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			buf.WriteString("\ufffd")
		} else {
			buf.WriteString(s[i : i+size])
		}
		i += size
	}
	buf.WriteByte('"')
}

// writeJS appends v as JSON. indent "" writes compact JSON; otherwise it
// mirrors JSON.stringify(v, null, indent).
func writeJS(buf *bytes.Buffer, v any, indent, prefix string) {
	nl := func(p string) {
		if indent != "" {
			buf.WriteByte('\n')
			buf.WriteString(p)
		}
	}
	colon := ":"
	if indent != "" {
		colon = ": "
	}
	switch x := v.(type) {
	case nil:
		buf.WriteString("null")
	case bool:
		if x {
			buf.WriteString("true")
		} else {
			buf.WriteString("false")
		}
	case float64:
		buf.WriteString(jsNumber(x))
	case int:
		buf.WriteString(jsNumber(float64(x)))
	case int64:
		buf.WriteString(jsNumber(float64(x)))
	case string:
		jsString(buf, x)
	case rawJSON:
		buf.Write(x)
	case doBlob:
		writeJS(buf, object{{"__blob__", true}, {"data", btoa(x)}}, indent, prefix)
	case d1Blob:
		arr := make([]any, len(x))
		for i, b := range x {
			arr[i] = float64(b)
		}
		writeJS(buf, arr, indent, prefix)
	case []any:
		if len(x) == 0 {
			buf.WriteString("[]")
			return
		}
		buf.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				buf.WriteByte(',')
			}
			nl(prefix + indent)
			writeJS(buf, e, indent, prefix+indent)
		}
		nl(prefix)
		buf.WriteByte(']')
	case []object:
		arr := make([]any, len(x))
		for i := range x {
			arr[i] = x[i]
		}
		writeJS(buf, arr, indent, prefix)
	case []string:
		arr := make([]any, len(x))
		for i := range x {
			arr[i] = x[i]
		}
		writeJS(buf, arr, indent, prefix)
	case object:
		n := 0
		for _, e := range x {
			if opaque(e.Value) {
				continue
			}
			if n == 0 {
				buf.WriteByte('{')
			} else {
				buf.WriteByte(',')
			}
			n++
			nl(prefix + indent)
			jsString(buf, e.Key)
			buf.WriteString(colon)
			writeJS(buf, e.Value, indent, prefix+indent)
		}
		if n == 0 {
			buf.WriteString("{}")
			return
		}
		nl(prefix)
		buf.WriteByte('}')
	case jsFunction, jsUndefined:
		buf.WriteString("null")
	default:
		// Only reached for types the emulator never produces; keep it valid JSON.
		b, err := json.Marshal(x)
		if err != nil {
			buf.WriteString("null")
			return
		}
		buf.Write(b)
	}
}

func marshalJS(v any) []byte {
	var buf bytes.Buffer
	writeJS(&buf, v, "", "")
	return buf.Bytes()
}

// errSyntax marks a body that JSON.parse would reject.
var errSyntax = errors.New("malformed JSON")

// parseJS decodes one JSON document the way JSON.parse does: numbers become
// float64, objects keep their key order (later duplicates win, in the first
// position, as in JavaScript).
func parseJS(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	v, err := decodeValue(dec)
	if err != nil {
		return nil, errSyntax
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errSyntax
	}
	return v, nil
}

func decodeValue(dec *json.Decoder) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			var o object
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				key, ok := kt.(string)
				if !ok {
					return nil, errSyntax
				}
				val, err := decodeValue(dec)
				if err != nil {
					return nil, err
				}
				replaced := false
				for i := range o {
					if o[i].Key == key {
						o[i].Value = val
						replaced = true
						break
					}
				}
				if !replaced {
					o = append(o, kv{key, val})
				}
			}
			if _, err := dec.Token(); err != nil {
				return nil, err
			}
			if o == nil {
				o = object{}
			}
			return o, nil
		case '[':
			arr := []any{}
			for dec.More() {
				val, err := decodeValue(dec)
				if err != nil {
					return nil, err
				}
				arr = append(arr, val)
			}
			if _, err := dec.Token(); err != nil {
				return nil, err
			}
			return arr, nil
		}
		return nil, errSyntax
	case json.Number:
		f, err := strconv.ParseFloat(string(t), 64)
		if err != nil {
			// Overflow: JSON.parse gives ±Infinity.
			if errors.Is(err, strconv.ErrRange) {
				return f, nil
			}
			return nil, err
		}
		return f, nil
	default:
		return t, nil // nil, bool, string
	}
}

// jsTypeName is the name zod v4 uses in "received <type>".
func jsTypeName(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case float64:
		return "number"
	case string:
		return "string"
	case []any:
		return "array"
	default:
		return "object"
	}
}

// jsToString is String(v) for the values JSON.parse produces.
func jsToString(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case bool:
		if x {
			return "true"
		}
		return "false"
	case float64:
		if math.IsNaN(x) {
			return "NaN"
		}
		if math.IsInf(x, 1) {
			return "Infinity"
		}
		if math.IsInf(x, -1) {
			return "-Infinity"
		}
		return jsNumber(x)
	case string:
		return x
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			if e != nil {
				parts[i] = jsToString(e)
			}
		}
		return strings.Join(parts, ",")
	default:
		return "[object Object]"
	}
}

// btoa encodes like the peer's btoa(String.fromCharCode(...bytes)).
func btoa(b []byte) string {
	return base64Std.EncodeToString(b)
}

// atob decodes with the WHATWG forgiving-base64 rules the peer's atob uses.
func atob(s string) ([]byte, error) {
	s = strings.Map(func(r rune) rune {
		switch r {
		case ' ', '\t', '\n', '\f', '\r':
			return -1
		}
		return r
	}, s)
	if len(s)%4 == 0 {
		s = strings.TrimSuffix(s, "=")
		s = strings.TrimSuffix(s, "=")
	}
	if len(s)%4 == 1 || strings.ContainsRune(s, '=') {
		return nil, errors.New("atob: invalid character")
	}
	return base64Raw.DecodeString(s)
}
