package jsonstream

import (
	"errors"
	"fmt"
	"io"
	"unicode/utf16"
	"unicode/utf8"
)

// Kind is the kind of a token.
type Kind uint8

// Token kinds. Key is an object member name; the other kinds are values or
// container delimiters.
const (
	Invalid Kind = iota
	ObjectBegin
	ObjectEnd
	ArrayBegin
	ArrayEnd
	Key
	String
	Number
	True
	False
	Null
)

var kindNames = [...]string{"invalid", "object", "end of object", "array", "end of array", "key", "string", "number", "true", "false", "null"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("Kind(%d)", k)
}

// Sentinels wrapped by *Error. Truncated input wraps io.ErrUnexpectedEOF.
var (
	ErrSyntax      = errors.New("invalid JSON")
	ErrInvalidUTF8 = fmt.Errorf("%w: invalid UTF-8", ErrSyntax)
	ErrDepth       = errors.New("nesting too deep")
	ErrTooLarge    = errors.New("value too large")
	// ErrUsage is returned when a call does not fit the decoder's position,
	// for example CopyValue where the next token is an end delimiter.
	ErrUsage = errors.New("jsonstream: call does not fit the input position")
)

// Error describes bad input: malformed (ErrSyntax, ErrInvalidUTF8),
// truncated (io.ErrUnexpectedEOF), over a limit (ErrDepth, ErrTooLarge), or
// a failure of the underlying reader.
type Error struct {
	Offset int64 // byte offset of the offending byte, or of the end of input
	Msg    string
	Err    error
}

func (e *Error) Error() string {
	return fmt.Sprintf("jsonstream: %s at offset %d", e.Msg, e.Offset)
}

func (e *Error) Unwrap() error { return e.Err }

// Options tune a Decoder. Zero fields take the defaults.
type Options struct {
	// MaxDepth bounds the nesting of arrays and objects (default 512).
	MaxDepth int
	// MaxScalar bounds the decoded size of a key or scalar returned by Next
	// (default 1 MiB). SkipValue and CopyValue have no size limit.
	MaxScalar int
	// BufferSize is the read buffer size (default 64 KiB, minimum 64).
	BufferSize int
}

const (
	defaultMaxDepth   = 512
	defaultMaxScalar  = 1 << 20
	defaultBufferSize = 64 << 10
)

// Parser states: what the grammar allows next.
const (
	stValue      uint8 = iota // a value
	stValueOrEnd              // a value or ']' (just after '[')
	stKeyOrEnd                // a key or '}' (just after '{')
	stKey                     // a key (after ',' in an object)
	stColon                   // ':' (after a key)
	stCommaOrEnd              // ',' or the container's end (after a value)
	stDone                    // the top-level value is complete
)

// Decoder reads one JSON document token by token. It is not safe for
// concurrent use.
type Decoder struct {
	r    io.Reader
	buf  []byte
	pos  int   // next unread byte in buf
	end  int   // end of valid data in buf
	base int64 // stream offset of buf[0]
	eof  bool
	err  error // sticky

	state  uint8
	stack  []byte // '{' or '[' per open container
	peeked Kind
	peekOK bool
	val    []byte

	copyW io.Writer // receives consumed bytes buf[mark:pos] while set
	mark  int

	maxDepth  int
	maxScalar int
}

// NewDecoder returns a Decoder with default options.
func NewDecoder(r io.Reader) *Decoder { return NewDecoderOptions(r, Options{}) }

// NewDecoderOptions returns a Decoder with the given options.
func NewDecoderOptions(r io.Reader, o Options) *Decoder {
	if o.MaxDepth <= 0 {
		o.MaxDepth = defaultMaxDepth
	}
	if o.MaxScalar <= 0 {
		o.MaxScalar = defaultMaxScalar
	}
	if o.BufferSize <= 0 {
		o.BufferSize = defaultBufferSize
	}
	if o.BufferSize < 64 {
		o.BufferSize = 64
	}
	return &Decoder{
		r:         r,
		buf:       make([]byte, o.BufferSize),
		stack:     make([]byte, 0, 16),
		maxDepth:  o.MaxDepth,
		maxScalar: o.MaxScalar,
	}
}

// Reset makes d read a new document from r, keeping its buffers and options.
func (d *Decoder) Reset(r io.Reader) {
	*d = Decoder{
		r:         r,
		buf:       d.buf,
		stack:     d.stack[:0],
		val:       d.val[:0],
		maxDepth:  d.maxDepth,
		maxScalar: d.maxScalar,
	}
}

// Offset is the stream offset just past the last consumed byte.
func (d *Decoder) Offset() int64 { return d.base + int64(d.pos) }

// Depth is the number of open arrays and objects.
func (d *Decoder) Depth() int { return len(d.stack) }

// Bytes returns the decoded text of the last Key or scalar returned by Next:
// the unescaped string, the number's literal, or "true"/"false"/"null". It
// is valid until the next call on d.
func (d *Decoder) Bytes() []byte { return d.val }

// Peek returns the kind of the next token without consuming it. In an
// object it returns Key or ObjectEnd; after the top-level value it returns
// io.EOF when only whitespace remains.
func (d *Decoder) Peek() (Kind, error) {
	if d.err != nil {
		return Invalid, d.err
	}
	if d.peekOK {
		return d.peeked, nil
	}
	for {
		c, ok := d.skipSpace()
		if !ok {
			if d.err != nil {
				return Invalid, d.err
			}
			if d.state == stDone {
				return Invalid, io.EOF
			}
			return Invalid, d.truncated()
		}
		switch d.state {
		case stDone:
			return Invalid, d.syntax(d.pos, "unexpected %s after the top-level value", quoteChar(c))
		case stColon:
			if c != ':' {
				return Invalid, d.syntax(d.pos, "expected ':' after object key, found %s", quoteChar(c))
			}
			d.pos++
			d.state = stValue
			continue
		case stCommaOrEnd:
			inObject := d.stack[len(d.stack)-1] == '{'
			switch {
			case c == ',':
				d.pos++
				if inObject {
					d.state = stKey
				} else {
					d.state = stValue
				}
				continue
			case c == '}' && inObject:
				return d.setPeek(ObjectEnd)
			case c == ']' && !inObject:
				return d.setPeek(ArrayEnd)
			}
			if inObject {
				return Invalid, d.syntax(d.pos, "expected ',' or '}' after object member, found %s", quoteChar(c))
			}
			return Invalid, d.syntax(d.pos, "expected ',' or ']' after array element, found %s", quoteChar(c))
		case stKeyOrEnd, stKey:
			if c == '"' {
				return d.setPeek(Key)
			}
			if c == '}' && d.state == stKeyOrEnd {
				return d.setPeek(ObjectEnd)
			}
			return Invalid, d.syntax(d.pos, "expected string key, found %s", quoteChar(c))
		default: // stValue, stValueOrEnd
			if c == ']' && d.state == stValueOrEnd {
				return d.setPeek(ArrayEnd)
			}
			k := valueKind[c]
			if k == Invalid {
				return Invalid, d.syntax(d.pos, "unexpected %s looking for the beginning of a value", quoteChar(c))
			}
			return d.setPeek(k)
		}
	}
}

func (d *Decoder) setPeek(k Kind) (Kind, error) {
	d.peeked, d.peekOK = k, true
	return k, nil
}

// Next consumes the next token and returns its kind. For Key and scalars the
// decoded text is available from Bytes; a key or scalar longer than
// Options.MaxScalar fails with ErrTooLarge (use SkipValue or CopyValue for
// values of any size).
func (d *Decoder) Next() (Kind, error) { return d.next(true) }

func (d *Decoder) next(decode bool) (Kind, error) {
	k, err := d.Peek()
	if err != nil {
		return Invalid, err
	}
	d.peekOK = false
	switch k {
	case ObjectBegin, ArrayBegin:
		if len(d.stack) >= d.maxDepth {
			return Invalid, d.fail(d.pos, ErrDepth, fmt.Sprintf("nesting deeper than %d", d.maxDepth))
		}
		d.pos++
		if k == ObjectBegin {
			d.stack = append(d.stack, '{')
			d.state = stKeyOrEnd
		} else {
			d.stack = append(d.stack, '[')
			d.state = stValueOrEnd
		}
		return k, nil
	case ObjectEnd, ArrayEnd:
		d.pos++
		d.stack = d.stack[:len(d.stack)-1]
	case Key, String:
		if err := d.scanString(decode); err != nil {
			return Invalid, err
		}
		if k == Key {
			d.state = stColon
			return k, nil
		}
	case Number:
		if err := d.scanNumber(decode); err != nil {
			return Invalid, err
		}
	case True:
		err = d.scanLiteral("true", decode)
	case False:
		err = d.scanLiteral("false", decode)
	case Null:
		err = d.scanLiteral("null", decode)
	}
	if err != nil {
		return Invalid, err
	}
	if len(d.stack) == 0 {
		d.state = stDone
	} else {
		d.state = stCommaOrEnd
	}
	return k, nil
}

// SkipValue consumes the next value, validating it.
func (d *Decoder) SkipValue() error {
	_, err := d.copyValue(nil)
	return err
}

// CopyValue consumes the next value, validating it, and writes its exact
// bytes (inner whitespace included) to w. It returns the value's length.
// Bytes already written stay written when the value turns out invalid.
func (d *Decoder) CopyValue(w io.Writer) (int64, error) { return d.copyValue(w) }

func (d *Decoder) copyValue(w io.Writer) (int64, error) {
	k, err := d.Peek()
	if err != nil {
		return 0, err
	}
	switch k {
	case ObjectEnd, ArrayEnd, Key:
		return 0, fmt.Errorf("%w: no value to read before %s at offset %d", ErrUsage, k, d.Offset())
	}
	start := d.Offset()
	outer := d.copyW
	if w != nil {
		if outer != nil {
			if !d.flushCopy() {
				return 0, d.err
			}
			d.copyW = io.MultiWriter(outer, w)
		} else {
			d.copyW = w
		}
		d.mark = d.pos
	}
	depth := len(d.stack)
	for {
		if _, err = d.next(false); err != nil || len(d.stack) == depth {
			break
		}
	}
	if w != nil {
		ok := d.flushCopy()
		d.copyW = outer
		if err == nil && !ok {
			err = d.err
		}
	}
	return d.Offset() - start, err
}

// StartCopy makes d write every byte it consumes, starting with the next
// token, to w until StopCopy. SkipValue and CopyValue may be used inside.
// It is how a caller walks a value's structure while copying it verbatim.
func (d *Decoder) StartCopy(w io.Writer) error {
	if d.copyW != nil {
		return fmt.Errorf("%w: StartCopy while a copy is active", ErrUsage)
	}
	if _, err := d.Peek(); err != nil && err != io.EOF {
		return err
	}
	d.copyW, d.mark = w, d.pos
	return nil
}

// StopCopy flushes the bytes consumed since StartCopy and ends the copy.
func (d *Decoder) StopCopy() error {
	if d.copyW == nil {
		return nil
	}
	ok := d.flushCopy()
	d.copyW = nil
	if !ok {
		return d.err
	}
	return nil
}

// End checks that nothing but whitespace follows the top-level value.
func (d *Decoder) End() error {
	_, err := d.Peek()
	switch {
	case err == io.EOF:
		return nil
	case err != nil:
		return err
	}
	return fmt.Errorf("%w: End before the top-level value is complete (offset %d)", ErrUsage, d.Offset())
}

// fill tries to make n bytes available at buf[pos:]. It reports false when
// the input ends or fails first (d.err is then set for failures).
func (d *Decoder) fill(n int) bool {
	noProgress := 0
	for d.end-d.pos < n {
		if d.eof || d.err != nil {
			return false
		}
		if !d.flushCopy() {
			return false
		}
		if d.pos > 0 {
			copy(d.buf, d.buf[d.pos:d.end])
			d.end -= d.pos
			d.base += int64(d.pos)
			d.pos, d.mark = 0, 0
		}
		m, err := d.r.Read(d.buf[d.end:])
		d.end += m
		switch {
		case err == io.EOF:
			d.eof = true
		case err != nil:
			d.err = &Error{Offset: d.base + int64(d.end), Msg: "read failed: " + err.Error(), Err: err}
			return false
		case m == 0:
			if noProgress++; noProgress >= 100 {
				d.err = &Error{Offset: d.base + int64(d.end), Msg: "read failed: no progress", Err: io.ErrNoProgress}
				return false
			}
		}
	}
	return true
}

func (d *Decoder) flushCopy() bool {
	if d.copyW != nil && d.mark < d.pos {
		if _, err := d.copyW.Write(d.buf[d.mark:d.pos]); err != nil {
			d.err = fmt.Errorf("jsonstream: copy at offset %d: %w", d.base+int64(d.mark), err)
			return false
		}
	}
	d.mark = d.pos
	return true
}

// skipSpace advances over whitespace and returns the next byte unconsumed.
func (d *Decoder) skipSpace() (byte, bool) {
	for {
		buf := d.buf[:d.end]
		for i := d.pos; i < len(buf); i++ {
			c := buf[i]
			if c == ' ' || c == '\n' || c == '\r' || c == '\t' {
				continue
			}
			d.pos = i
			return c, true
		}
		d.pos = d.end
		if !d.fill(1) {
			return 0, false
		}
	}
}

func (d *Decoder) scanString(decode bool) error {
	start := d.Offset()
	d.pos++ // opening quote
	if decode {
		d.val = d.val[:0]
	}
	for {
		buf := d.buf[:d.end]
		i := d.pos
		for i < len(buf) && strSafe[buf[i]] {
			i++
		}
		if decode && i > d.pos {
			d.val = append(d.val, buf[d.pos:i]...)
			if len(d.val) > d.maxScalar {
				return d.failAt(start, ErrTooLarge, fmt.Sprintf("string longer than %d bytes", d.maxScalar))
			}
		}
		d.pos = i
		if i == len(buf) {
			if !d.fill(1) {
				return d.endOfInput()
			}
			continue
		}
		switch c := buf[i]; {
		case c == '"':
			d.pos++
			return nil
		case c == '\\':
			if err := d.scanEscape(decode); err != nil {
				return err
			}
		case c < 0x20:
			return d.syntax(d.pos, "control character %#02x in string", c)
		default:
			if d.end-d.pos < utf8.UTFMax {
				d.fill(utf8.UTFMax)
				if d.err != nil {
					return d.err
				}
			}
			p := d.buf[d.pos:d.end]
			r, size := utf8.DecodeRune(p)
			if r == utf8.RuneError && size == 1 {
				if !utf8.FullRune(p) {
					return d.truncated()
				}
				return d.fail(d.pos, ErrInvalidUTF8, "invalid UTF-8 in string")
			}
			if decode {
				d.val = append(d.val, p[:size]...)
			}
			d.pos += size
		}
	}
}

// scanEscape consumes one escape sequence at buf[pos] == '\\'.
func (d *Decoder) scanEscape(decode bool) error {
	if d.end-d.pos < 2 && !d.fill(2) {
		return d.endOfInput()
	}
	c := d.buf[d.pos+1]
	if c != 'u' {
		out := unescape[c]
		if out == 0 {
			return d.syntax(d.pos+1, "invalid escape %s in string", quoteChar(c))
		}
		if decode {
			d.val = append(d.val, out)
		}
		d.pos += 2
		return nil
	}
	r, err := d.hex4()
	if err != nil {
		return err
	}
	if !decode {
		return nil
	}
	if utf16.IsSurrogate(r) {
		// A high surrogate followed by an escaped low one is one code
		// point; anything else decodes as U+FFFD, like encoding/json.
		r2 := rune(-1)
		if r < 0xDC00 && (d.end-d.pos >= 6 || d.fill(6)) && d.buf[d.pos] == '\\' && d.buf[d.pos+1] == 'u' {
			r2 = hexValue(d.buf[d.pos+2 : d.pos+6])
		}
		if r2 >= 0xDC00 && r2 < 0xE000 {
			r = utf16.DecodeRune(r, r2)
			d.pos += 6
		} else {
			r = utf8.RuneError
		}
	}
	d.val = utf8.AppendRune(d.val, r)
	if len(d.val) > d.maxScalar {
		return d.fail(d.pos, ErrTooLarge, fmt.Sprintf("string longer than %d bytes", d.maxScalar))
	}
	return nil
}

// hex4 consumes "\uXXXX" at buf[pos] and returns its value.
func (d *Decoder) hex4() (rune, error) {
	full := d.end-d.pos >= 6 || d.fill(6)
	if d.err != nil {
		return 0, d.err
	}
	p := d.buf[d.pos+2 : min(d.pos+6, d.end)]
	for i, c := range p {
		if hexDigit[c] < 0 {
			return 0, d.syntax(d.pos+2+i, "invalid %s in \\u escape", quoteChar(c))
		}
	}
	if !full {
		return 0, d.truncated()
	}
	r := hexValue(p)
	d.pos += 6
	return r, nil
}

func hexValue(p []byte) rune {
	var r rune
	for _, c := range p[:4] {
		v := hexDigit[c]
		if v < 0 {
			return -1
		}
		r = r<<4 | rune(v)
	}
	return r
}

// Number grammar states.
const (
	numStart = iota
	numMinus
	numZero
	numInt
	numDot
	numFrac
	numE
	numESign
	numExp
)

func (d *Decoder) scanNumber(decode bool) error {
	if decode {
		d.val = d.val[:0]
	}
	st := numStart
	run := d.pos // first byte not yet appended to d.val
	for {
		if d.pos == d.end {
			if decode {
				d.val = append(d.val, d.buf[run:d.pos]...)
				if len(d.val) > d.maxScalar {
					return d.fail(d.pos, ErrTooLarge, fmt.Sprintf("number longer than %d bytes", d.maxScalar))
				}
			}
			ok := d.fill(1)
			run = d.pos
			if !ok {
				if d.err != nil {
					return d.err
				}
				break
			}
		}
		c := d.buf[d.pos]
		next := -1
		isDigit := c >= '0' && c <= '9'
		switch st {
		case numStart:
			switch {
			case c == '-':
				next = numMinus
			case c == '0':
				next = numZero
			case isDigit:
				next = numInt
			}
		case numMinus:
			if c == '0' {
				next = numZero
			} else if isDigit {
				next = numInt
			}
		case numZero, numInt, numFrac:
			switch {
			case isDigit && st != numZero:
				next = st
			case c == '.' && st != numFrac:
				next = numDot
			case c == 'e' || c == 'E':
				next = numE
			}
		case numDot:
			if isDigit {
				next = numFrac
			}
		case numE:
			if c == '+' || c == '-' {
				next = numESign
			} else if isDigit {
				next = numExp
			}
		case numESign, numExp:
			if isDigit {
				next = numExp
			}
		}
		if next < 0 {
			break
		}
		st = next
		d.pos++
	}
	if decode {
		d.val = append(d.val, d.buf[run:d.pos]...)
	}
	switch st {
	case numZero, numInt, numFrac, numExp:
		return nil
	}
	if d.pos == d.end {
		return d.truncated()
	}
	return d.syntax(d.pos, "unexpected %s in number", quoteChar(d.buf[d.pos]))
}

func (d *Decoder) scanLiteral(lit string, decode bool) error {
	if d.end-d.pos < len(lit) {
		d.fill(len(lit))
		if d.err != nil {
			return d.err
		}
	}
	p := d.buf[d.pos:min(d.pos+len(lit), d.end)]
	for i, c := range p {
		if c != lit[i] {
			return d.syntax(d.pos+i, "unexpected %s in literal %s", quoteChar(c), lit)
		}
	}
	if len(p) < len(lit) {
		return d.truncated()
	}
	d.pos += len(lit)
	if decode {
		d.val = append(d.val[:0], lit...)
	}
	return nil
}

func (d *Decoder) endOfInput() error {
	if d.err != nil {
		return d.err
	}
	return d.truncated()
}

func (d *Decoder) truncated() error {
	return d.fail(d.end, io.ErrUnexpectedEOF, "unexpected end of input (truncated)")
}

func (d *Decoder) syntax(pos int, format string, args ...any) error {
	return d.fail(pos, ErrSyntax, fmt.Sprintf(format, args...))
}

// fail records a sticky error at buffer position pos.
func (d *Decoder) fail(pos int, sentinel error, msg string) error {
	return d.failAt(d.base+int64(pos), sentinel, msg)
}

// failAt records a sticky error at stream offset off.
func (d *Decoder) failAt(off int64, sentinel error, msg string) error {
	d.err = &Error{Offset: off, Msg: msg, Err: sentinel}
	d.peekOK = false
	return d.err
}

func quoteChar(c byte) string {
	switch {
	case c == '\'':
		return `'\''`
	case c == '"':
		return `'"'`
	case c >= 0x20 && c < 0x7f:
		return "'" + string(c) + "'"
	}
	return fmt.Sprintf("byte %#02x", c)
}

var (
	strSafe   [256]bool
	valueKind [256]Kind
	hexDigit  [256]int8
	unescape  [256]byte
)

func init() {
	for c := 0x20; c < 0x80; c++ {
		strSafe[c] = c != '"' && c != '\\'
	}
	valueKind['{'] = ObjectBegin
	valueKind['['] = ArrayBegin
	valueKind['"'] = String
	valueKind['-'] = Number
	for c := '0'; c <= '9'; c++ {
		valueKind[c] = Number
	}
	valueKind['t'] = True
	valueKind['f'] = False
	valueKind['n'] = Null
	for i := range hexDigit {
		hexDigit[i] = -1
	}
	for c := '0'; c <= '9'; c++ {
		hexDigit[c] = int8(c - '0')
	}
	for c := 'a'; c <= 'f'; c++ {
		hexDigit[c] = int8(c - 'a' + 10)
		hexDigit[c-'a'+'A'] = int8(c - 'a' + 10)
	}
	for in, out := range map[byte]byte{'"': '"', '\\': '\\', '/': '/', 'b': '\b', 'f': '\f', 'n': '\n', 'r': '\r', 't': '\t'} {
		unescape[in] = out
	}
}
