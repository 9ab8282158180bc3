package jsonstream

import (
	"bufio"
	"io"
	"strings"
)

// IndentValue reads one JSON value from d and writes it to w laid out the
// way JavaScript's JSON.stringify(value, null, indent) lays it out
// (numbers keep their literal text, strings use AppendString's escaping),
// starting at nesting depth level. It streams: memory does not grow with
// the value's size.
func IndentValue(w *bufio.Writer, d *Decoder, indent string, level int) error {
	var buf []byte
	type frame struct{ first, object bool }
	var stack []frame
	newline := func(depth int) {
		w.WriteByte('\n')
		w.WriteString(strings.Repeat(indent, depth))
	}
	for {
		k, err := d.Next()
		if err != nil {
			return err
		}
		depth := level + len(stack)
		// A value (or key) inside a container starts on a new line.
		if n := len(stack); n > 0 && k != ObjectEnd && k != ArrayEnd {
			top := &stack[n-1]
			if !(top.object && k != Key) {
				if !top.first {
					w.WriteByte(',')
				}
				top.first = false
				newline(depth)
			}
		}
		switch k {
		case ObjectBegin, ArrayBegin:
			if e, _ := d.Peek(); e == ObjectEnd || e == ArrayEnd {
				d.Next()
				if k == ObjectBegin {
					w.WriteString("{}")
				} else {
					w.WriteString("[]")
				}
				break
			}
			if k == ObjectBegin {
				w.WriteByte('{')
			} else {
				w.WriteByte('[')
			}
			stack = append(stack, frame{first: true, object: k == ObjectBegin})
			continue
		case ObjectEnd, ArrayEnd:
			stack = stack[:len(stack)-1]
			newline(level + len(stack))
			if k == ObjectEnd {
				w.WriteByte('}')
			} else {
				w.WriteByte(']')
			}
		case Key:
			if buf, err = AppendString(buf[:0], string(d.Bytes())); err != nil {
				return err
			}
			w.Write(buf)
			w.WriteString(": ")
			continue
		case String:
			if buf, err = AppendString(buf[:0], string(d.Bytes())); err != nil {
				return err
			}
			w.Write(buf)
		case Number:
			w.Write(d.Bytes())
		case True:
			w.WriteString("true")
		case False:
			w.WriteString("false")
		case Null:
			w.WriteString("null")
		}
		if len(stack) == 0 {
			return nil
		}
	}
}

// Indent copies the single JSON document of r to w in JSON.stringify's
// indented layout.
func Indent(w io.Writer, r io.Reader, indent string) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	d := NewDecoder(r)
	if err := IndentValue(bw, d, indent, 0); err != nil {
		return err
	}
	if err := d.End(); err != nil {
		return err
	}
	return bw.Flush()
}
