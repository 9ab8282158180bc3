package archive

import (
	"bufio"
	"fmt"
	"hash/maphash"
	"io"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/edgevault/edgevault/internal/iox"
	"github.com/edgevault/edgevault/internal/jsonstream"
)

// Writer stages, in the official key order (spec 3.1).
const (
	stHeader = iota
	stControl
	stAuthD1
	stShards
	stDatabases
	stConfig
	stNamespaces
	stSecrets
	stStorage
	stClosed
)

var stageNames = [...]string{"header", "ControlD1", "AuthD1", "AuthShard", "Database", "Config", "DataNamespace", "Secrets", "StorageObject", "Close"}

const sectionOrder = "ControlD1, AuthD1, AuthShard*, Database*, Config, DataNamespace*, Secrets, StorageObject*, Close"

// JSONWriter writes a v1.1 backup document from pieces handed to it in the
// official key order: version, timestamp, source, control, auth, databases,
// config, dataNamespaces, secrets, storage. ControlD1 and AuthD1 are
// required; the others may be skipped or, for the map sections, repeated.
//
// Raw pieces (dump replies, config) are copied verbatim — numbers, float
// spellings, escapes and key order stay byte-for-byte — while their shape is
// validated as they stream through, so nothing is held in memory. Because
// output is written as input is read, a piece that fails validation leaves
// partial output behind: after any error other than ErrOrder the writer is
// unusable and its output must be discarded (use Validate beforehand to
// reject a piece without spoiling the document).
//
// auth.shards and databases are always written ({} when empty);
// dataNamespaces and storage only when they have an entry; null is never
// written. Output is compact and deterministic for identical input.
type JSONWriter struct {
	cw    *iox.CountingWriter
	out   *bufio.Writer
	dec   *jsonstream.Decoder
	walk  *walker
	stage int
	first bool // no entry written yet in the open map or array
	err   error

	seed  maphash.Seed
	names map[uint64]struct{} // hashes of the open section's names or keys
	buf   []byte
}

// NewJSONWriter starts a document on w. h.Timestamp must be in
// FormatTimestamp's spelling, h.Source one of the Source constants, and
// h.Version empty or "1.1".
func NewJSONWriter(w io.Writer, h Header) (*JSONWriter, error) {
	if h.Version != "" && h.Version != Version {
		return nil, fmt.Errorf("archive: JSONWriter: version %q, want %q", h.Version, Version)
	}
	if t, err := time.Parse(isoLayout, h.Timestamp); err != nil || FormatTimestamp(t) != h.Timestamp {
		return nil, fmt.Errorf("archive: JSONWriter: timestamp %q is not like 2026-03-07T10:00:05.123Z", h.Timestamp)
	}
	switch h.Source {
	case SourceCloudflareEdge, SourceLocal, SourceDocker:
	default:
		return nil, fmt.Errorf("archive: JSONWriter: source %q, want %q, %q or %q", h.Source, SourceCloudflareEdge, SourceLocal, SourceDocker)
	}
	cw := &iox.CountingWriter{W: w}
	jw := &JSONWriter{
		cw:    cw,
		out:   bufio.NewWriterSize(cw, 64<<10),
		dec:   jsonstream.NewDecoder(nil),
		seed:  maphash.MakeSeed(),
		names: make(map[uint64]struct{}),
	}
	jw.walk = newWalker(jw.dec, "")
	jw.put(`{"version":"1.1","timestamp":`)
	jw.putString(h.Timestamp)
	jw.put(`,"source":`)
	jw.putString(h.Source)
	return jw, jw.err
}

// Size is the number of bytes written so far, buffered ones included.
func (jw *JSONWriter) Size() int64 { return jw.cw.N + int64(jw.out.Buffered()) }

// ControlD1 writes control.d1 from a tables object (the "tables" of the
// dump-control-d1 reply).
func (jw *JSONWriter) ControlD1(tables io.Reader) (ValueStats, error) {
	vs := ValueStats{Section: SectionControlD1}
	if err := jw.enter(stControl); err != nil {
		return vs, err
	}
	jw.put(`,"control":{"d1":`)
	if jw.fail(jw.piece(tables, "control.d1 tables", &vs)) == nil {
		jw.put("}")
	}
	return vs, jw.err
}

// AuthD1 writes auth.d1 from a tables object (the "tables" of the dump-d1
// reply).
func (jw *JSONWriter) AuthD1(tables io.Reader) (ValueStats, error) {
	vs := ValueStats{Section: SectionAuthD1}
	if err := jw.enter(stAuthD1); err != nil {
		return vs, err
	}
	jw.put(`,"auth":{"d1":`)
	return vs, jw.fail(jw.piece(tables, "auth.d1 tables", &vs))
}

// AuthShard writes auth.shards[name] from a dump-do reply, which must be a
// DODump whose doName is name.
func (jw *JSONWriter) AuthShard(name string, dump io.Reader) (ValueStats, error) {
	return jw.doEntry(stShards, SectionAuthShard, name, dump)
}

// Database writes databases[name] from a dump-do reply, which must be a
// DODump whose doName is name (a {"needsCreate":true} reply is rejected).
func (jw *JSONWriter) Database(name string, dump io.Reader) (ValueStats, error) {
	return jw.doEntry(stDatabases, SectionDatabase, name, dump)
}

func (jw *JSONWriter) doEntry(stage int, section Section, name string, dump io.Reader) (ValueStats, error) {
	vs := ValueStats{Section: section, Name: name}
	if err := jw.enter(stage); err != nil {
		return vs, err
	}
	if err := jw.entryName(ValueRef{section, name}.String(), name); err != nil {
		return vs, err
	}
	return vs, jw.fail(jw.piece(dump, "DODump", &vs))
}

// Config writes config from the GET /config reply, which must be an object.
func (jw *JSONWriter) Config(raw io.Reader) (ValueStats, error) {
	vs := ValueStats{Section: SectionConfig}
	if err := jw.enter(stConfig); err != nil {
		return vs, err
	}
	jw.put(`,"config":`)
	return vs, jw.fail(jw.piece(raw, "config", &vs))
}

// DataNamespace writes dataNamespaces[name] from a dump-data reply, which
// must be a DataNamespaceDump whose namespace is name.
func (jw *JSONWriter) DataNamespace(name string, dump io.Reader) (ValueStats, error) {
	vs := ValueStats{Section: SectionDataNamespace, Name: name}
	if err := jw.enter(stNamespaces); err != nil {
		return vs, err
	}
	if err := jw.entryName(ValueRef{SectionDataNamespace, name}.String(), name); err != nil {
		return vs, err
	}
	return vs, jw.fail(jw.piece(dump, "DataNamespaceDump", &vs))
}

// Secrets writes secrets, keys sorted. An empty map writes nothing, like
// the official CLI when it finds no secrets.
func (jw *JSONWriter) Secrets(m map[string]string) (ValueStats, error) {
	vs := ValueStats{Section: SectionSecrets, Keys: len(m)}
	if err := jw.enter(stSecrets); err != nil || len(m) == 0 {
		return vs, err
	}
	jw.put(`,"secrets":`)
	vstart := jw.Size()
	jw.put("{")
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for i, k := range keys {
		if i > 0 {
			jw.put(",")
		}
		if err := jw.putString(k); err != nil {
			return vs, jw.fail(fmt.Errorf("archive: secret name %q: %w", k, err))
		}
		jw.put(":")
		if err := jw.putString(m[k]); err != nil {
			return vs, jw.fail(fmt.Errorf("archive: secret %q: value is not valid UTF-8", k))
		}
	}
	jw.put("}")
	vs.Bytes = jw.Size() - vstart
	return vs, jw.err
}

// StorageObject appends one entry to storage.objects. Path is filled in
// (and must match when given) for keys ObjectPath escapes.
func (jw *JSONWriter) StorageObject(o Object) error {
	switch {
	case o.Key == "" || !utf8.ValidString(o.Key):
		return fmt.Errorf("archive: storage object key %q: want non-empty UTF-8", o.Key)
	case o.Size < 0 || o.Size > maxSafeInteger:
		return fmt.Errorf("archive: storage object %q: invalid size %d", o.Key, o.Size)
	case o.SHA256 != "" && !isSHA256Hex(o.SHA256):
		return fmt.Errorf("archive: storage object %q: sha256 %q is not 64 lower-case hex digits", o.Key, o.SHA256)
	}
	name, escaped := ObjectPath(o.Key)
	if !escaped {
		name = ""
	}
	if o.Path != "" && o.Path != name {
		return fmt.Errorf("archive: storage object %q: path %q, want %q", o.Key, o.Path, name)
	}
	o.Path = name
	b := append(jw.buf[:0], `{"key":`...)
	b, _ = jsonstream.AppendString(b, o.Key)
	b = append(b, `,"size":`...)
	b = strconv.AppendInt(b, o.Size, 10)
	b = append(b, `,"etag":`...)
	var err error
	if b, err = jsonstream.AppendString(b, o.ETag); err == nil {
		b = append(b, `,"contentType":`...)
		b, err = jsonstream.AppendString(b, o.ContentType)
	}
	if err != nil {
		return fmt.Errorf("archive: storage object %q: %w", o.Key, err)
	}
	if o.SHA256 != "" {
		b = append(b, `,"sha256":"`...)
		b = append(b, o.SHA256...)
		b = append(b, '"')
	}
	if o.Path != "" {
		b = append(b, `,"path":`...)
		b, _ = jsonstream.AppendString(b, o.Path)
	}
	b = append(b, '}')
	jw.buf = b[:0]
	if err := jw.enter(stStorage); err != nil {
		return err
	}
	h := maphash.String(jw.seed, o.Key)
	if _, dup := jw.names[h]; dup {
		return fmt.Errorf("archive: storage object %q written twice", o.Key)
	}
	jw.names[h] = struct{}{}
	if !jw.first {
		jw.put(",")
	}
	jw.first = false
	jw.putBytes(b)
	return jw.err
}

// Close ends the document and flushes it. It does not close the underlying
// writer.
func (jw *JSONWriter) Close() error {
	if err := jw.enter(stClosed); err != nil {
		return err
	}
	jw.put("}")
	if jw.err == nil {
		if err := jw.out.Flush(); err != nil {
			jw.err = fmt.Errorf("archive: JSONWriter: %w", err)
		}
	}
	return jw.err
}

// enter moves the writer to stage s, closing the sections in between.
func (jw *JSONWriter) enter(s int) error {
	if jw.err != nil {
		return jw.err
	}
	cur := jw.stage
	switch {
	case cur == stClosed:
		return fmt.Errorf("%w: %s after Close", ErrOrder, stageNames[s])
	case s < cur || s == cur && s != stShards && s != stDatabases && s != stNamespaces && s != stStorage:
		return fmt.Errorf("%w: %s after %s (order: %s)", ErrOrder, stageNames[s], stageNames[cur], sectionOrder)
	case s == stControl && cur != stHeader:
		return fmt.Errorf("%w: ControlD1 must come first", ErrOrder)
	case s > stControl && cur < stControl:
		return fmt.Errorf("%w: %s before ControlD1 (order: %s)", ErrOrder, stageNames[s], sectionOrder)
	case s > stAuthD1 && cur < stAuthD1:
		return fmt.Errorf("%w: %s before AuthD1 (order: %s)", ErrOrder, stageNames[s], sectionOrder)
	case s == cur:
		return nil
	}
	switch cur {
	case stAuthD1:
		if s > stShards {
			jw.put(`,"shards":{}}`)
		}
	case stShards:
		jw.put("}}")
	case stDatabases, stNamespaces:
		jw.put("}")
	case stStorage:
		jw.put("]}")
	}
	if cur < stDatabases && s > stDatabases {
		jw.put(`,"databases":{}`)
	}
	switch s {
	case stShards:
		jw.put(`,"shards":{`)
	case stDatabases:
		jw.put(`,"databases":{`)
	case stNamespaces:
		jw.put(`,"dataNamespaces":{`)
	case stStorage:
		jw.put(`,"storage":{"objects":[`)
	}
	jw.stage, jw.first = s, true
	clear(jw.names)
	return jw.err
}

// entryName writes the key of a map entry, rejecting duplicates.
func (jw *JSONWriter) entryName(path, name string) error {
	h := maphash.String(jw.seed, name)
	if _, dup := jw.names[h]; dup {
		return fmt.Errorf("archive: %s written twice", path)
	}
	jw.names[h] = struct{}{}
	if !jw.first {
		jw.put(",")
	}
	jw.first = false
	if err := jw.putString(name); err != nil {
		return jw.fail(fmt.Errorf("archive: %s: name is not valid UTF-8", path))
	}
	jw.put(":")
	return jw.err
}

// piece copies one raw value from r into the document while validating it.
func (jw *JSONWriter) piece(r io.Reader, what string, vs *ValueStats) error {
	if jw.err != nil {
		return jw.err
	}
	jw.dec.Reset(r)
	jw.walk.what = what
	return validatePiece(jw.walk, jw.out, "invalid "+what, vs)
}

// validatePiece validates the single value a piece holds, copying it to
// dst when dst is not nil, and checks that nothing follows it.
func validatePiece(w *walker, dst io.Writer, msg string, vs *ValueStats) error {
	if err := w.copyValue(ValueRef{vs.Section, vs.Name}, msg, dst, vs); err != nil {
		return err
	}
	if err := w.d.End(); err != nil {
		return w.decodeErr(ValueRef{vs.Section, vs.Name}.String(), err)
	}
	return nil
}

// Validate checks one raw piece the way the JSONWriter method for section
// would (name is the map key for auth.shards, databases and
// dataNamespaces) without writing anything, so a bad dump can be refused
// before it reaches a document.
func Validate(section Section, name string, r io.Reader) (ValueStats, error) {
	vs := ValueStats{Section: section, Name: name}
	switch section {
	case SectionAuthShard, SectionDatabase, SectionDataNamespace:
	case SectionControlD1, SectionAuthD1, SectionConfig, SectionSecrets:
		if name != "" {
			return vs, fmt.Errorf("archive: validate %s: unexpected name %q", section, name)
		}
	default:
		return vs, fmt.Errorf("archive: validate: unknown section %q", section)
	}
	w := newWalker(jsonstream.NewDecoder(r), string(section)+" value")
	return vs, validatePiece(w, nil, "invalid "+string(section)+" value", &vs)
}

func (jw *JSONWriter) fail(err error) error {
	if err != nil && jw.err == nil {
		jw.err = err
	}
	return jw.err
}

func (jw *JSONWriter) put(s string) {
	if jw.err == nil {
		if _, err := jw.out.WriteString(s); err != nil {
			jw.err = fmt.Errorf("archive: JSONWriter: %w", err)
		}
	}
}

func (jw *JSONWriter) putString(s string) error {
	b, err := jsonstream.AppendString(jw.buf[:0], s)
	if err != nil {
		return err
	}
	jw.buf = b
	jw.putBytes(b)
	return nil
}

func (jw *JSONWriter) putBytes(b []byte) {
	if jw.err == nil {
		if _, err := jw.out.Write(b); err != nil {
			jw.err = fmt.Errorf("archive: JSONWriter: %w", err)
		}
	}
}
