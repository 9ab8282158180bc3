package archive

import (
	"compress/flate"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/edgevault/edgevault/internal/jsonstream"
)

// maxColumns bounds the distinct column names of one table (SQLite allows
// at most 32767 columns), keeping the per-table column index bounded.
const maxColumns = 32767

// maxSecrets bounds the members of secrets, whose names are kept to detect
// duplicates.
const maxSecrets = 10000

// walker validates the shapes of backup values on a jsonstream.Decoder.
// Callers tee the decoder to copy what the walker consumes verbatim.
type walker struct {
	d *jsonstream.Decoder
	// what names the document in error messages ("backup JSON", "database dump").
	what string

	colIndex map[string]int
	colSeen  []uint32
	rowGen   uint32
}

func newWalker(d *jsonstream.Decoder, what string) *walker {
	return &walker{d: d, what: what, colIndex: make(map[string]int)}
}

// decodeErr turns decoder and read errors into *Error where they say
// something about the input, and passes other failures through.
func (w *walker) decodeErr(path string, err error) error {
	var je *jsonstream.Error
	if errors.As(err, &je) {
		switch {
		case errors.Is(je.Err, jsonstream.ErrSyntax), errors.Is(je.Err, jsonstream.ErrDepth), errors.Is(je.Err, jsonstream.ErrTooLarge):
			return &Error{Msg: w.what + " is not valid JSON", Path: path, Detail: je.Msg, Offset: je.Offset, Err: ErrInvalid}
		case je.Err == io.ErrUnexpectedEOF:
			return &Error{Msg: w.what + " is truncated", Path: path, Detail: "the input ends inside the document", Offset: je.Offset,
				Err: errors.Join(ErrTruncated, io.ErrUnexpectedEOF)}
		}
		return readErr(w.what, je.Err)
	}
	var ae *Error
	if errors.As(err, &ae) {
		return err
	}
	return readErr(w.what, err)
}

// readErr classifies a failure of the underlying stream.
func readErr(what string, err error) error {
	var corrupt flate.CorruptInputError
	var ae *Error
	switch {
	case errors.As(err, &ae):
		return err
	case errors.Is(err, io.ErrUnexpectedEOF):
		return &Error{Msg: what + " is truncated", Detail: err.Error(), Offset: -1, Err: errors.Join(ErrTruncated, err)}
	case errors.Is(err, gzip.ErrChecksum), errors.Is(err, gzip.ErrHeader), errors.As(err, &corrupt):
		return &Error{Msg: what + " is corrupt", Detail: err.Error(), Offset: -1, Err: errors.Join(ErrInvalid, err)}
	}
	return err
}

func (w *walker) peek(path string) (jsonstream.Kind, error) {
	k, err := w.d.Peek()
	if err != nil {
		return k, w.decodeErr(path, err)
	}
	return k, nil
}

func (w *walker) next(path string) (jsonstream.Kind, error) {
	k, err := w.d.Next()
	if err != nil {
		return k, w.decodeErr(path, err)
	}
	return k, nil
}

func (w *walker) skip(path string) error {
	if err := w.d.SkipValue(); err != nil {
		return w.decodeErr(path, err)
	}
	return nil
}

func (w *walker) shape(msg, path, format string, args ...any) error {
	return invalidf(msg, path, w.d.Offset(), format, args...)
}

// describe names a value kind for messages ("null", "a string", ...).
func describe(k jsonstream.Kind) string {
	switch k {
	case jsonstream.ObjectBegin:
		return "an object"
	case jsonstream.ArrayBegin:
		return "an array"
	case jsonstream.String:
		return "a string"
	case jsonstream.Number:
		return "a number"
	case jsonstream.True, jsonstream.False:
		return "a boolean"
	case jsonstream.Null:
		return "null"
	}
	return k.String()
}

// beginObject consumes '{' or fails with msg when the value is something else.
func (w *walker) beginObject(msg, path, want string) error {
	k, err := w.peek(path)
	if err != nil {
		return err
	}
	if k != jsonstream.ObjectBegin {
		if k == jsonstream.Null {
			return w.shape(msg, path, "is null, want %s (omit an absent field instead)", want)
		}
		return w.shape(msg, path, "is %s, want %s", describe(k), want)
	}
	_, err = w.next(path)
	return err
}

// key reads the next member name, reporting false at the end of the object.
func (w *walker) key(path string) (string, bool, error) {
	k, err := w.next(path)
	if err != nil || k == jsonstream.ObjectEnd {
		return "", false, err
	}
	return string(w.d.Bytes()), true, nil
}

func (w *walker) str(msg, path string) (string, error) {
	k, err := w.peek(path)
	if err != nil {
		return "", err
	}
	if k != jsonstream.String {
		return "", w.shape(msg, path, "is %s, want a string", describe(k))
	}
	if _, err := w.next(path); err != nil {
		return "", err
	}
	return string(w.d.Bytes()), nil
}

func (w *walker) stringArray(msg, path string) ([]string, error) {
	k, err := w.peek(path)
	if err != nil {
		return nil, err
	}
	if k != jsonstream.ArrayBegin {
		return nil, w.shape(msg, path, "is %s, want an array of strings", describe(k))
	}
	if _, err := w.next(path); err != nil {
		return nil, err
	}
	out := []string{}
	for i := 0; ; i++ {
		k, err := w.peek(path)
		if err != nil {
			return nil, err
		}
		if k == jsonstream.ArrayEnd {
			_, err = w.next(path)
			return out, err
		}
		s, err := w.str(msg, fmt.Sprintf("%s[%d]", path, i))
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
}

// tables validates a tables object (an object of arrays of row objects) and
// adds a TableStats per table to vs.
func (w *walker) tables(msg, path string, vs *ValueStats) error {
	if err := w.beginObject(msg, path, "an object of tables"); err != nil {
		return err
	}
	seen := make(map[string]struct{})
	for {
		name, ok, err := w.key(path)
		if err != nil || !ok {
			return err
		}
		tpath := path + "[" + quote(name) + "]"
		if _, dup := seen[name]; dup {
			return w.shape(msg, tpath, "duplicate table")
		}
		seen[name] = struct{}{}
		t := TableStats{Name: name}
		if err := w.rows(msg, tpath, &t, nil); err != nil {
			return err
		}
		vs.addTable(t)
	}
}

// rowSink, when given to rows, decides per row where its bytes go:
// startRow comes before a row's '{' is consumed, beginRow once it is known
// whether the row is {} (return false to drop it), endRow after a kept
// row's '}'. CopyTables uses it to filter rows.
type rowSink interface {
	startRow() error
	beginRow(empty bool) (keep bool, err error)
	endRow() error
}

// copyValue validates the big value ref at the decoder's position, teeing
// its bytes to dst when dst is not nil, and sets vs.Bytes.
func (w *walker) copyValue(ref ValueRef, msg string, dst io.Writer, vs *ValueStats) error {
	p := ref.String()
	if _, err := w.peek(p); err != nil {
		return err
	}
	start := w.d.Offset()
	if dst != nil {
		if err := w.d.StartCopy(dst); err != nil {
			return w.decodeErr(p, err)
		}
	}
	err := w.value(ref, msg, vs)
	if serr := w.d.StopCopy(); err == nil && serr != nil {
		err = w.decodeErr(p, serr)
	}
	if err != nil {
		return err
	}
	vs.Bytes = w.d.Offset() - start
	return nil
}

// value validates the big value ref with the walker that fits its section.
func (w *walker) value(ref ValueRef, msg string, vs *ValueStats) error {
	p := ref.String()
	switch ref.Section {
	case SectionControlD1, SectionAuthD1:
		return w.tables(msg, p, vs)
	case SectionAuthShard, SectionDatabase:
		return w.doDump(msg, p, ref.Name, vs)
	case SectionDataNamespace:
		return w.namespaceDump(msg, p, ref.Name, vs)
	case SectionConfig:
		return w.config(msg, p, vs)
	case SectionSecrets:
		return w.secrets(msg, p, vs)
	}
	return fmt.Errorf("archive: unknown section %q", ref.Section)
}

// rows validates one table: an array of row objects.
func (w *walker) rows(msg, path string, t *TableStats, sink rowSink) error {
	k, err := w.peek(path)
	if err != nil {
		return err
	}
	if k != jsonstream.ArrayBegin {
		if k == jsonstream.Null {
			return w.shape(msg, path, "is null, want an array of rows")
		}
		return w.shape(msg, path, "is %s, want an array of rows", describe(k))
	}
	if _, err := w.next(path); err != nil {
		return err
	}
	clear(w.colIndex)
	w.colSeen = w.colSeen[:0]
	t.Columns = []string{}
	for row := int64(0); ; row++ {
		k, err := w.peek(path)
		if err != nil {
			return err
		}
		if k == jsonstream.ArrayEnd {
			_, err = w.next(path)
			return err
		}
		if k != jsonstream.ObjectBegin {
			return w.shape(msg, fmt.Sprintf("%s[%d]", path, row), "row is %s, want an object", describe(k))
		}
		if sink != nil {
			keep, err := w.sinkRow(sink)
			if err != nil {
				return w.decodeErr(path, err)
			}
			if !keep {
				t.EmptyRows++
				continue
			}
		} else if _, err := w.next(path); err != nil {
			return err
		}
		empty, err := w.rowMembers(msg, path, row, t)
		if err != nil {
			return err
		}
		if sink != nil {
			if err := sink.endRow(); err != nil {
				return err
			}
		}
		t.Rows++
		if empty {
			t.EmptyRows++
		}
	}
}

// sinkRow consumes a row's '{' and lets the sink decide about it once it is
// known whether the row is empty. A dropped row is consumed entirely.
func (w *walker) sinkRow(sink rowSink) (bool, error) {
	if err := sink.startRow(); err != nil {
		return false, err
	}
	if _, err := w.d.Next(); err != nil {
		return false, err
	}
	k, err := w.d.Peek()
	if err != nil {
		return false, err
	}
	keep, err := sink.beginRow(k == jsonstream.ObjectEnd)
	if err != nil || keep {
		return keep, err
	}
	_, err = w.d.Next()
	return false, err
}

// rowMembers walks the members of a row whose '{' is consumed, recording
// its columns, and consumes the closing '}'.
func (w *walker) rowMembers(msg, path string, row int64, t *TableStats) (empty bool, err error) {
	w.rowGen++
	if w.rowGen == 0 { // wrapped: forget stale marks
		clear(w.colSeen)
		w.rowGen = 1
	}
	empty = true
	for {
		k, err := w.d.Next()
		if err != nil {
			return false, w.decodeErr(path, err)
		}
		if k == jsonstream.ObjectEnd {
			return empty, nil
		}
		empty = false
		col := w.d.Bytes()
		i, ok := w.colIndex[string(col)]
		if !ok {
			if len(t.Columns) >= maxColumns {
				return false, w.shape(msg, fmt.Sprintf("%s[%d]", path, row), "more than %d distinct columns", maxColumns)
			}
			i = len(t.Columns)
			name := string(col)
			w.colIndex[name] = i
			t.Columns = append(t.Columns, name)
			w.colSeen = append(w.colSeen, 0)
		}
		if w.colSeen[i] == w.rowGen {
			return false, w.shape(msg, fmt.Sprintf("%s[%d]", path, row), "duplicate column %q", t.Columns[i])
		}
		w.colSeen[i] = w.rowGen
		if err := w.d.SkipValue(); err != nil {
			return false, w.decodeErr(path, err)
		}
	}
}

// req names a required presence bit of an object being walked.
type req struct {
	bit  int
	name string
}

// require reports the first of fields whose bit is not set in have.
func (w *walker) require(msg, path string, have int, fields ...req) error {
	for _, f := range fields {
		if have&f.bit == 0 {
			return w.shape(msg, path, "missing %s", f.name)
		}
	}
	return nil
}

// Field bits for duplicate and presence checks.
const (
	fDoName = 1 << iota
	fDoType
	fTimestamp
	fTables
	fSchema
	fType
	fNamespace
	fTableOrder
)

func fieldBit(field string) int {
	switch field {
	case "doName":
		return fDoName
	case "doType":
		return fDoType
	case "timestamp":
		return fTimestamp
	case "type":
		return fType
	case "namespace":
		return fNamespace
	}
	return 0
}

// Field bits of a storage object.
const (
	fKey = 1 << iota
	fSize
	fETag
	fContentType
	fSHA
	fPath
)

func objectFieldBit(field string) int {
	switch field {
	case "key":
		return fKey
	case "size":
		return fSize
	case "etag":
		return fETag
	case "contentType":
		return fContentType
	case "sha256":
		return fSHA
	case "path":
		return fPath
	}
	return 0
}

func (w *walker) once(msg, path string, have *int, bit int, field string) error {
	if *have&bit != 0 {
		return w.shape(msg, path, "duplicate field %q", field)
	}
	*have |= bit
	return nil
}

// needsCreate rejects the reply a DO gives before it exists (spec 2.5).
func (w *walker) needsCreate(msg, path string) error {
	k, err := w.peek(path)
	if err != nil {
		return err
	}
	if k == jsonstream.True {
		return w.shape(msg, path, `is a {"needsCreate":true} reply (the DO does not exist on the server), not a dump`)
	}
	return w.skip(path)
}

// doDump validates a DODump stored under key (spec 3.2).
func (w *walker) doDump(msg, path, key string, vs *ValueStats) error {
	if err := w.beginObject(msg, path, "a DODump object"); err != nil {
		return err
	}
	have := 0
	for {
		field, ok, err := w.key(path)
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		fpath := path + "." + field
		switch field {
		case "doName", "doType", "timestamp":
			bit := fieldBit(field)
			if err := w.once(msg, path, &have, bit, field); err != nil {
				return err
			}
			s, err := w.str(msg, fpath)
			if err != nil {
				return err
			}
			switch field {
			case "doName":
				vs.DoName = s
			case "doType":
				if s != "database" && s != "auth" {
					return w.shape(msg, fpath, `is %q, want "database" or "auth"`, s)
				}
				vs.DoType = s
			default:
				vs.Timestamp = s
			}
		case "tables":
			if err := w.once(msg, path, &have, fTables, field); err != nil {
				return err
			}
			if err := w.tables(msg, fpath, vs); err != nil {
				return err
			}
		case "schema":
			if err := w.once(msg, path, &have, fSchema, field); err != nil {
				return err
			}
			if err := w.schema(msg, fpath, vs); err != nil {
				return err
			}
		case "needsCreate":
			if err := w.needsCreate(msg, path); err != nil {
				return err
			}
		default:
			if err := w.skip(fpath); err != nil {
				return err
			}
		}
	}
	if err := w.require(msg, path, have, req{fDoName, "doName"}, req{fDoType, "doType"}, req{fTimestamp, "timestamp"}, req{fTables, "tables"}); err != nil {
		return err
	}
	if vs.DoName != key {
		return w.shape(msg, path, "doName %q differs from its key %q", vs.DoName, key)
	}
	return nil
}

func (w *walker) schema(msg, path string, vs *ValueStats) error {
	if err := w.beginObject(msg, path, "an object of strings"); err != nil {
		return err
	}
	vs.Schema = make(map[string]string)
	for {
		name, ok, err := w.key(path)
		if err != nil || !ok {
			return err
		}
		s, err := w.str(msg, path+"["+quote(name)+"]")
		if err != nil {
			return err
		}
		vs.Schema[name] = s
	}
}

// namespaceDump validates a DataNamespaceDump stored under key (spec 3.2).
func (w *walker) namespaceDump(msg, path, key string, vs *ValueStats) error {
	if err := w.beginObject(msg, path, "a DataNamespaceDump object"); err != nil {
		return err
	}
	have := 0
	for {
		field, ok, err := w.key(path)
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		fpath := path + "." + field
		switch field {
		case "type", "namespace", "timestamp":
			bit := fieldBit(field)
			if err := w.once(msg, path, &have, bit, field); err != nil {
				return err
			}
			s, err := w.str(msg, fpath)
			if err != nil {
				return err
			}
			switch field {
			case "type":
				if s != "data" {
					return w.shape(msg, fpath, `is %q, want "data"`, s)
				}
			case "namespace":
				vs.Namespace = s
			default:
				vs.Timestamp = s
			}
		case "tables":
			if err := w.once(msg, path, &have, fTables, field); err != nil {
				return err
			}
			if err := w.tables(msg, fpath, vs); err != nil {
				return err
			}
		case "tableOrder":
			if err := w.once(msg, path, &have, fTableOrder, field); err != nil {
				return err
			}
			order, err := w.stringArray(msg, fpath)
			if err != nil {
				return err
			}
			vs.TableOrder = order
		case "needsCreate":
			if err := w.needsCreate(msg, path); err != nil {
				return err
			}
		default:
			if err := w.skip(fpath); err != nil {
				return err
			}
		}
	}
	if err := w.require(msg, path, have, req{fType, "type"}, req{fNamespace, "namespace"}, req{fTimestamp, "timestamp"}, req{fTables, "tables"}); err != nil {
		return err
	}
	if vs.Namespace != key {
		return w.shape(msg, path, "namespace %q differs from its key %q", vs.Namespace, key)
	}
	return nil
}

// secrets validates a string → string map and returns its size.
func (w *walker) secrets(msg, path string, vs *ValueStats) error {
	if err := w.beginObject(msg, path, "an object of strings"); err != nil {
		return err
	}
	seen := make(map[string]struct{})
	for {
		name, ok, err := w.key(path)
		if err != nil || !ok {
			return err
		}
		npath := path + "[" + quote(name) + "]"
		if _, dup := seen[name]; dup {
			return w.shape(msg, npath, "duplicate secret")
		}
		if len(seen) >= maxSecrets {
			return w.shape(msg, path, "more than %d secrets", maxSecrets)
		}
		seen[name] = struct{}{}
		if _, err := w.str(msg, npath); err != nil {
			return err
		}
		vs.Keys++
	}
}

// config validates that config is an object and counts inline service-key
// secrets anywhere inside it.
func (w *walker) config(msg, path string, vs *ValueStats) error {
	if err := w.beginObject(msg, path, "an object"); err != nil {
		return err
	}
	base := w.d.Depth()
	lastKey := ""
	for {
		k, err := w.peek(path)
		if err != nil {
			return err
		}
		switch k {
		case jsonstream.Key:
			if _, err := w.next(path); err != nil {
				return err
			}
			lastKey = string(w.d.Bytes())
			if w.d.Depth() == base {
				vs.Keys++
			}
			continue
		case jsonstream.ObjectBegin, jsonstream.ArrayBegin:
			if _, err := w.next(path); err != nil {
				return err
			}
		case jsonstream.ObjectEnd, jsonstream.ArrayEnd:
			if _, err := w.next(path); err != nil {
				return err
			}
			if w.d.Depth() < base {
				return nil
			}
		case jsonstream.String:
			if lastKey == "inlineSecret" {
				if _, err := w.next(path); err != nil {
					return err
				}
				if len(w.d.Bytes()) > 0 {
					vs.InlineSecrets++
				}
				break
			}
			fallthrough
		default:
			if err := w.skip(path); err != nil {
				return err
			}
		}
		lastKey = ""
	}
}

const maxSafeInteger = 1<<53 - 1

// object decodes one storage.objects entry.
func (w *walker) object(msg, path string) (Object, error) {
	var o Object
	if err := w.beginObject(msg, path, "an object"); err != nil {
		return o, err
	}
	have := 0
	for {
		field, ok, err := w.key(path)
		if err != nil {
			return o, err
		}
		if !ok {
			break
		}
		fpath := path + "." + field
		bit := objectFieldBit(field)
		if bit == 0 {
			if err := w.skip(fpath); err != nil {
				return o, err
			}
			continue
		}
		if err := w.once(msg, path, &have, bit, field); err != nil {
			return o, err
		}
		if bit == fSize {
			if o.Size, err = w.size(msg, fpath); err != nil {
				return o, err
			}
			continue
		}
		s, err := w.str(msg, fpath)
		if err != nil {
			return o, err
		}
		switch bit {
		case fKey:
			o.Key = s
		case fETag:
			o.ETag = s
		case fContentType:
			o.ContentType = s
		case fSHA:
			if !isSHA256Hex(s) {
				return o, w.shape(msg, fpath, "is %q, want 64 lower-case hex digits", s)
			}
			o.SHA256 = s
		case fPath:
			o.Path = s
		}
	}
	if err := w.require(msg, path, have, req{fKey, "key"}, req{fSize, "size"}, req{fETag, "etag"}, req{fContentType, "contentType"}); err != nil {
		return o, err
	}
	if o.Key == "" {
		return o, w.shape(msg, path+".key", "is empty")
	}
	if o.Path != "" {
		if name, escaped := ObjectPath(o.Key); !escaped || name != o.Path {
			return o, w.shape(msg, path+".path", "is %q, but key %q is stored as %q", o.Path, o.Key, name)
		}
	}
	return o, nil
}

// size reads a non-negative integral byte count. The official reader only
// needs a finite number; fractional, negative or unsafe sizes cannot
// describe an object and are rejected.
func (w *walker) size(msg, path string) (int64, error) {
	k, err := w.peek(path)
	if err != nil {
		return 0, err
	}
	if k != jsonstream.Number {
		return 0, w.shape(msg, path, "is %s, want a number", describe(k))
	}
	if _, err := w.next(path); err != nil {
		return 0, err
	}
	lit := string(w.d.Bytes())
	n, err := strconv.ParseInt(lit, 10, 64)
	if err != nil {
		f, ferr := strconv.ParseFloat(lit, 64)
		if ferr != nil || f != math.Trunc(f) || f > maxSafeInteger {
			return 0, w.shape(msg, path, "is %s, want a whole number of bytes", lit)
		}
		n = int64(f)
	}
	if n < 0 || n > maxSafeInteger {
		return 0, w.shape(msg, path, "is %s, want a whole number of bytes", lit)
	}
	return n, nil
}

func isSHA256Hex(s string) bool {
	if len(s) != 64 {
		return false
	}
	return strings.Trim(s, "0123456789abcdef") == ""
}
