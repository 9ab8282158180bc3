package archive

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"hash/maphash"
	"io"
	"path"
	"strings"
	"unicode/utf8"

	"github.com/edgevault/edgevault/internal/iox"
	"github.com/edgevault/edgevault/internal/jsonstream"
)

// ErrUnsupportedVersion is wrapped by the error for a version other than
// the string "1.1".
var ErrUnsupportedVersion = fmt.Errorf("%w: unsupported version", ErrInvalid)

// Messages of the official CLI's validator (spec 3.4), reused so both tools
// say the same thing about the same file.
const (
	msgRoot         = "Backup file must be a JSON object."
	msgVersion      = "Unsupported backup version: "
	msgTimestamp    = "Backup file is missing timestamp."
	msgSource       = "Backup file is missing source."
	msgControl      = "Backup file is missing control metadata."
	msgControlD1    = "Backup file is missing control.d1."
	msgAuth         = "Backup file is missing auth metadata."
	msgAuthD1       = "Backup file is missing auth.d1."
	msgShards       = "Backup file is missing auth.shards."
	msgDatabases    = "Backup file is missing databases."
	msgNamespaces   = "Backup file has invalid data namespace dumps."
	msgConfig       = "Backup file has invalid config metadata."
	msgSecrets      = "Backup file has invalid secrets metadata."
	msgNoBackupJSON = "backup.json not found in archive."
)

// Member is a storage member of a .tar.gz.
type Member struct {
	Name    string // tar member name, storage/<key> or an escaped name
	Key     string // the R2 key it holds
	Size    int64
	Escaped bool
}

// Visitor receives a backup's content while Read streams it. Errors it
// returns stop Read and are returned wrapped. Embed NopVisitor to implement
// only some methods.
//
// Read validates as it goes and top-level keys may come in any order, so a
// value handed to the Visitor may belong to a file that later turns out
// invalid: the verdict is final only when Read returns nil. A caller that
// must not act on an invalid file (a restore) reads it once to verify and
// again to act, or stages what it receives.
type Visitor interface {
	// Header is called once, before the first section value, with the
	// version, timestamp and source seen so far (all three in files written
	// by EdgeBase and edgevault, which put them first).
	Header(ctx context.Context, h Header) error
	// BeginValue is called before each big value: control.d1, auth.d1,
	// every auth.shards, databases and dataNamespaces entry, config and
	// secrets. The returned writer, if not nil, receives the value's raw
	// bytes verbatim while it is validated.
	BeginValue(ctx context.Context, ref ValueRef) (io.Writer, error)
	// EndValue is called after the value validated, with its stats.
	EndValue(ctx context.Context, ref ValueRef, stats ValueStats) error
	// StorageObject is called for each storage.objects entry.
	StorageObject(ctx context.Context, o Object) error
	// StorageMember is called for each storage member of a .tar.gz with a
	// reader of its bytes, valid only during the call. Members that come
	// before backup.json in a foreign archive are handed over before they
	// can be checked against storage.objects.
	StorageMember(ctx context.Context, m Member, r io.Reader) error
}

// NopVisitor implements Visitor by doing nothing.
type NopVisitor struct{}

// Header implements Visitor.
func (NopVisitor) Header(context.Context, Header) error { return nil }

// BeginValue implements Visitor.
func (NopVisitor) BeginValue(context.Context, ValueRef) (io.Writer, error) { return nil, nil }

// EndValue implements Visitor.
func (NopVisitor) EndValue(context.Context, ValueRef, ValueStats) error { return nil }

// StorageObject implements Visitor.
func (NopVisitor) StorageObject(context.Context, Object) error { return nil }

// StorageMember implements Visitor.
func (NopVisitor) StorageMember(context.Context, Member, io.Reader) error { return nil }

// Read validates a backup from r in one sequential pass and hands its
// content to v (nil for none). It checks everything the official validator
// does, in its order where the stream allows (spec 3.4), plus: rows are
// objects without duplicate columns, DODump keys equal their doName (and
// namespace keys their namespace), no {"needsCreate":true} replies,
// duplicate keys, storage objects well-formed, nothing after the document.
// For a .tar.gz it also checks the layout: backup.json at the root, only
// storage/ members besides it (directories, PAX global headers and
// AppleDouble ._* files are ignored), no absolute or '..' names, links,
// devices or FIFOs, no duplicates, the storage members equal
// storage.objects exactly (keys and sizes, and SHA-256 where listed), and
// the gzip and tar streams are complete. A .json that lists storage objects
// is valid; whether a restore needs their bytes is the restore's decision.
//
// The Summary is filled as far as the read got, also on error. Memory does
// not depend on the file's size: it is bounded by the tables of the biggest
// dump, a hash per DO name of the biggest map section (duplicate check), and
// 24 bytes per storage object.
func Read(ctx context.Context, r io.Reader, f Format, v Visitor) (Summary, error) {
	rd := newReader(ctx, v, f)
	err := rd.read(r)
	return rd.summary(), err
}

type reader struct {
	ctx context.Context
	v   Visitor
	f   Format
	dec *jsonstream.Decoder
	w   *walker
	idx *storageIndex
	sum Summary
	sha hash.Hash

	hdr        Header
	headerSent bool
	top        uint32 // known top-level keys seen
	names      map[uint64]struct{}
	seed       maphash.Seed

	sawStorageDir bool
	emptyExample  string
	ftsTables     []string
	shardRows     int64
	inlineSecrets int
}

func newReader(ctx context.Context, v Visitor, f Format) *reader {
	if v == nil {
		v = NopVisitor{}
	}
	dec := jsonstream.NewDecoder(nil)
	return &reader{
		ctx:   ctx,
		v:     v,
		f:     f,
		dec:   dec,
		w:     newWalker(dec, "backup JSON"),
		idx:   newStorageIndex(),
		sum:   Summary{Format: f},
		names: make(map[uint64]struct{}),
		seed:  maphash.MakeSeed(),
	}
}

func (r *reader) read(src io.Reader) error {
	cr := &iox.CountingReader{R: iox.ContextReader(r.ctx, src)}
	defer func() { r.sum.Bytes = cr.N }()
	switch r.f {
	case JSON:
		if err := r.readJSON(cr); err != nil {
			return err
		}
		return r.idx.endListing()
	case TarGz:
		return r.readTarGz(cr)
	}
	return fmt.Errorf("archive: read: invalid format %d", int(r.f))
}

// Top-level key bits.
const (
	topVersion = 1 << iota
	topTimestamp
	topSource
	topControl
	topAuth
	topDatabases
	topNamespaces
	topConfig
	topSecrets
	topStorage
	topControlD1
	topAuthD1
	topShards
)

func topBit(name string) uint32 {
	switch name {
	case "version":
		return topVersion
	case "timestamp":
		return topTimestamp
	case "source":
		return topSource
	case "control":
		return topControl
	case "auth":
		return topAuth
	case "databases":
		return topDatabases
	case "dataNamespaces":
		return topNamespaces
	case "config":
		return topConfig
	case "secrets":
		return topSecrets
	case "storage":
		return topStorage
	}
	return 0
}

func (r *reader) readJSON(src io.Reader) error {
	r.dec.Reset(src)
	k, err := r.w.peek("")
	if err != nil {
		return err
	}
	if k != jsonstream.ObjectBegin {
		return &Error{Msg: msgRoot, Detail: "the document is " + describe(k), Offset: r.dec.Offset(), Err: ErrInvalid}
	}
	if _, err := r.w.next(""); err != nil {
		return err
	}
	for {
		name, ok, err := r.w.key("")
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		if err := r.ctx.Err(); err != nil {
			return err
		}
		bit := topBit(name)
		if r.top&bit != 0 {
			return invalidf("duplicate top-level field", name, r.dec.Offset(), "the field appears twice")
		}
		r.top |= bit
		if len(r.sum.Sections) < maxSections {
			r.sum.Sections = append(r.sum.Sections, name)
		}
		if err := r.topField(name); err != nil {
			return err
		}
	}
	if err := r.dec.End(); err != nil {
		return r.w.decodeErr("", err)
	}
	if err := r.sendHeader(); err != nil {
		return err
	}
	return r.checkRequired()
}

// checkRequired reports absent required fields in the official order.
func (r *reader) checkRequired() error {
	switch {
	case r.top&topVersion == 0:
		return &Error{Msg: msgVersion + "unknown", Detail: "version is missing", Offset: -1, Err: ErrUnsupportedVersion}
	case r.top&topTimestamp == 0:
		return &Error{Msg: msgTimestamp, Offset: -1, Err: ErrInvalid}
	case r.top&topSource == 0:
		return &Error{Msg: msgSource, Offset: -1, Err: ErrInvalid}
	case r.top&topControl == 0:
		return &Error{Msg: msgControl, Offset: -1, Err: ErrInvalid}
	case r.top&topControlD1 == 0:
		return &Error{Msg: msgControlD1, Offset: -1, Err: ErrInvalid}
	case r.top&topAuth == 0:
		return &Error{Msg: msgAuth, Offset: -1, Err: ErrInvalid}
	case r.top&topAuthD1 == 0:
		return &Error{Msg: msgAuthD1, Offset: -1, Err: ErrInvalid}
	case r.top&topShards == 0:
		return &Error{Msg: msgShards, Offset: -1, Err: ErrInvalid}
	case r.top&topDatabases == 0:
		return &Error{Msg: msgDatabases, Offset: -1, Err: ErrInvalid}
	}
	return nil
}

func (r *reader) topField(name string) error {
	switch name {
	case "version":
		return r.version()
	case "timestamp":
		s, err := r.headerString(msgTimestamp, name)
		r.hdr.Timestamp = s
		return err
	case "source":
		s, err := r.headerString(msgSource, name)
		r.hdr.Source = s
		return err
	case "control":
		return r.object(msgControl, name, func(field string) error {
			if field != "d1" {
				return r.w.skip("control." + field)
			}
			if err := r.sub(topControlD1, msgControlD1, "control.d1"); err != nil {
				return err
			}
			return r.value(ValueRef{Section: SectionControlD1}, msgControlD1)
		})
	case "auth":
		return r.object(msgAuth, name, func(field string) error {
			switch field {
			case "d1":
				if err := r.sub(topAuthD1, msgAuthD1, "auth.d1"); err != nil {
					return err
				}
				return r.value(ValueRef{Section: SectionAuthD1}, msgAuthD1)
			case "shards":
				if err := r.sub(topShards, msgShards, "auth.shards"); err != nil {
					return err
				}
				return r.dumpMap(SectionAuthShard, msgShards)
			}
			return r.w.skip("auth." + field)
		})
	case "databases":
		return r.dumpMap(SectionDatabase, msgDatabases)
	case "dataNamespaces":
		return r.dumpMap(SectionDataNamespace, msgNamespaces)
	case "config":
		return r.value(ValueRef{Section: SectionConfig}, msgConfig)
	case "secrets":
		return r.value(ValueRef{Section: SectionSecrets}, msgSecrets)
	case "storage":
		return r.storage()
	}
	return r.w.skip(name)
}

func (r *reader) sub(bit uint32, msg, p string) error {
	if r.top&bit != 0 {
		return invalidf(msg, p, r.dec.Offset(), "the field appears twice")
	}
	r.top |= bit
	return nil
}

func (r *reader) version() error {
	k, err := r.w.peek("version")
	if err != nil {
		return err
	}
	off := r.dec.Offset()
	var shown, detail string
	switch k {
	case jsonstream.ObjectBegin, jsonstream.ArrayBegin:
		if err := r.w.skip("version"); err != nil {
			return err
		}
		shown, detail = "["+describe(k)+"]", `the version must be the string "1.1"`
	default:
		if _, err := r.w.next("version"); err != nil {
			return err
		}
		shown = string(r.dec.Bytes())
		switch k {
		case jsonstream.String:
			if shown == Version {
				r.hdr.Version = shown
				return nil
			}
		case jsonstream.Null:
			shown, detail = "unknown", "version is null"
		default:
			detail = fmt.Sprintf(`a %s; the version must be the string "1.1"`, strings.TrimPrefix(describe(k), "a "))
		}
	}
	return &Error{Msg: msgVersion + shown, Path: "version", Detail: detail, Offset: off, Err: ErrUnsupportedVersion}
}

func (r *reader) headerString(msg, p string) (string, error) {
	s, err := r.w.str(msg, p)
	if err == nil && s == "" {
		err = r.w.shape(msg, p, "is empty")
	}
	return s, err
}

func (r *reader) sendHeader() error {
	if r.headerSent {
		return nil
	}
	r.headerSent = true
	r.sum.Version, r.sum.Timestamp, r.sum.Source = r.hdr.Version, r.hdr.Timestamp, r.hdr.Source
	if err := r.v.Header(r.ctx, r.hdr); err != nil {
		return fmt.Errorf("archive: visitor: header: %w", err)
	}
	return nil
}

// object walks an object value, calling field for each member.
func (r *reader) object(msg, p string, field func(name string) error) error {
	if err := r.w.beginObject(msg, p, "an object"); err != nil {
		return err
	}
	for {
		name, ok, err := r.w.key(p)
		if err != nil || !ok {
			return err
		}
		if err := field(name); err != nil {
			return err
		}
	}
}

// dumpMap walks auth.shards, databases or dataNamespaces.
func (r *reader) dumpMap(section Section, msg string) error {
	want := "an object of DODumps"
	if section == SectionDataNamespace {
		want = "an object of DataNamespaceDumps"
	}
	p := string(section)
	if err := r.w.beginObject(msg, p, want); err != nil {
		return err
	}
	clear(r.names)
	for {
		name, ok, err := r.w.key(p)
		if err != nil || !ok {
			return err
		}
		ref := ValueRef{Section: section, Name: name}
		h := maphash.String(r.seed, name)
		if _, dup := r.names[h]; dup {
			return invalidf(msg, ref.String(), r.dec.Offset(), "the name appears twice")
		}
		r.names[h] = struct{}{}
		if err := r.value(ref, msg); err != nil {
			return err
		}
	}
}

// value validates one big value, teeing its bytes to the visitor's sink.
func (r *reader) value(ref ValueRef, msg string) error {
	if err := r.sendHeader(); err != nil {
		return err
	}
	if err := r.ctx.Err(); err != nil {
		return err
	}
	sink, err := r.v.BeginValue(r.ctx, ref)
	if err != nil {
		return fmt.Errorf("archive: visitor: %s: %w", ref, err)
	}
	vs := ValueStats{Section: ref.Section, Name: ref.Name}
	if err := r.w.copyValue(ref, msg, sink, &vs); err != nil {
		return err
	}
	r.account(vs)
	if err := r.v.EndValue(r.ctx, ref, vs); err != nil {
		return fmt.Errorf("archive: visitor: %s: %w", ref, err)
	}
	return nil
}

func (r *reader) storage() error {
	if err := r.sendHeader(); err != nil {
		return err
	}
	sawObjects := false
	err := r.object(msgStorage, "storage", func(field string) error {
		if field != "objects" {
			return r.w.skip("storage." + field)
		}
		if sawObjects {
			return invalidf(msgStorage, "storage.objects", r.dec.Offset(), "the field appears twice")
		}
		sawObjects = true
		return r.objects()
	})
	if err == nil && !sawObjects {
		err = invalidf(msgStorage, "storage", r.dec.Offset(), "missing objects")
	}
	return err
}

func (r *reader) objects() error {
	k, err := r.w.peek("storage.objects")
	if err != nil {
		return err
	}
	if k != jsonstream.ArrayBegin {
		return invalidf(msgStorage, "storage.objects", r.dec.Offset(), "is %s, want an array", describe(k))
	}
	if _, err := r.w.next("storage.objects"); err != nil {
		return err
	}
	for i := 0; ; i++ {
		k, err := r.w.peek("storage.objects")
		if err != nil {
			return err
		}
		if k == jsonstream.ArrayEnd {
			_, err := r.w.next("storage.objects")
			return err
		}
		if i%1024 == 0 {
			if err := r.ctx.Err(); err != nil {
				return err
			}
		}
		p := fmt.Sprintf("storage.objects[%d]", i)
		o, err := r.w.object(msgStorage, p)
		if err != nil {
			return err
		}
		verified, err := r.idx.addObject(o, p, r.dec.Offset())
		if err != nil {
			return err
		}
		if verified {
			r.sum.VerifiedObjects++
		}
		r.sum.Objects++
		r.sum.StorageBytes += o.Size
		if _, escaped := ObjectPath(o.Key); escaped {
			r.sum.EscapedKeys++
		}
		if err := r.v.StorageObject(r.ctx, o); err != nil {
			return fmt.Errorf("archive: visitor: %s: %w", p, err)
		}
	}
}

// readTarGz reads a .tar.gz: backup.json and storage members.
func (r *reader) readTarGz(src io.Reader) error {
	br := bufio.NewReaderSize(src, 64<<10)
	zr, err := gzip.NewReader(br)
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return readErr("archive", err)
	}
	zr.Multistream(false)
	cr := &iox.CountingReader{R: &gzipMembers{br: br, zr: zr}}
	tr := tar.NewReader(cr)
	sawJSON := false
	for {
		if err := r.ctx.Err(); err != nil {
			return err
		}
		// Finish the previous member so cr.N ends on its data; the next
		// header starts at the following 512-byte boundary.
		if _, err := io.Copy(io.Discard, tr); err != nil {
			return readErr("archive", err)
		}
		boundary := (cr.N + 511) &^ 511
		hdr, err := tr.Next()
		if errors.Is(err, tar.ErrInsecurePath) && hdr != nil {
			err = nil // GODEBUG=tarinsecurepath=0; cleanMemberName says precisely what is wrong
		}
		if err == io.EOF {
			// tar.Reader also stops quietly when the stream ends without
			// the two zero blocks that close an archive; then it is cut.
			if cr.N != boundary+1024 {
				return &Error{Msg: "archive is truncated", Detail: "the tar stream ends without its end-of-archive blocks", Offset: -1,
					Err: errors.Join(ErrTruncated, io.ErrUnexpectedEOF)}
			}
			break
		}
		if err != nil {
			if errors.Is(err, tar.ErrHeader) {
				return &Error{Msg: "archive is corrupt", Detail: err.Error(), Offset: -1, Err: errors.Join(ErrInvalid, err)}
			}
			return readErr("archive", err)
		}
		name, err := cleanMemberName(hdr.Name)
		if err != nil {
			return err
		}
		switch hdr.Typeflag {
		case tar.TypeXGlobalHeader:
			continue
		case tar.TypeDir:
			if name == "storage" {
				r.sawStorageDir = true
			}
			continue
		case tar.TypeReg:
			if name == "" {
				return &Error{Msg: "unsafe archive member", Path: hdr.Name, Detail: "a file with an empty name", Offset: -1, Err: ErrInvalid}
			}
		case tar.TypeSymlink:
			return memberErr(hdr.Name, "symbolic links are not allowed (target %q)", hdr.Linkname)
		case tar.TypeLink:
			return memberErr(hdr.Name, "hard links are not allowed (target %q)", hdr.Linkname)
		case tar.TypeChar, tar.TypeBlock:
			return memberErr(hdr.Name, "device files are not allowed")
		case tar.TypeFifo:
			return memberErr(hdr.Name, "FIFOs are not allowed")
		default:
			return memberErr(hdr.Name, "member type %q is not supported", hdr.Typeflag)
		}
		for k := range hdr.PAXRecords {
			if strings.HasPrefix(k, "GNU.sparse.") {
				return memberErr(hdr.Name, "sparse files are not supported")
			}
		}
		switch {
		case name == "backup.json":
			if sawJSON {
				return &Error{Msg: "duplicate archive member", Path: hdr.Name, Detail: "backup.json appears twice", Offset: -1, Err: ErrInvalid}
			}
			sawJSON = true
			if err := r.idx.beginListing(); err != nil {
				return err
			}
			if err := r.readJSON(tr); err != nil {
				return err
			}
			if err := r.idx.endListing(); err != nil {
				return err
			}
		case strings.HasPrefix(name, storagePrefix):
			if err := r.storageMember(name, hdr.Size, tr); err != nil {
				return err
			}
		case strings.HasPrefix(path.Base(name), "._"):
			// macOS AppleDouble metadata.
		default:
			return memberErr(hdr.Name, "members other than backup.json must be under %s", storagePrefix)
		}
	}
	if err := r.trailing(cr); err != nil {
		return err
	}
	if !sawJSON {
		return &Error{Msg: msgNoBackupJSON, Offset: -1, Err: ErrInvalid}
	}
	return r.idx.finish()
}

// trailing reads what follows the tar end-of-archive blocks: only the zero
// padding tar writes to fill its last record is allowed.
func (r *reader) trailing(src io.Reader) error {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		for _, c := range buf[:n] {
			if c != 0 {
				return &Error{Msg: "archive is invalid", Detail: "unexpected data after the end of the tar archive", Offset: -1, Err: ErrInvalid}
			}
		}
		switch {
		case err == io.EOF:
			return nil
		case err != nil:
			return readErr("archive", err)
		}
	}
}

func memberErr(name, format string, args ...any) error {
	return &Error{Msg: "unsafe archive member", Path: name, Detail: fmt.Sprintf(format, args...), Offset: -1, Err: ErrInvalid}
}

// cleanMemberName validates a member name and returns it without a leading
// "./" or trailing '/'. Names are never used as file system paths here, but
// the official restore extracts with the system tar, so anything that
// could land outside the extraction directory is refused.
func cleanMemberName(name string) (string, error) {
	n := name
	for strings.HasPrefix(n, "./") {
		n = n[2:]
	}
	n = strings.TrimSuffix(n, "/")
	if n == "" || n == "." {
		return "", nil
	}
	switch {
	case strings.HasPrefix(n, "/"):
		return "", memberErr(name, "absolute paths are not allowed")
	case !utf8.ValidString(n):
		return "", memberErr(name, "the name is not valid UTF-8")
	case strings.ContainsRune(n, 0):
		return "", memberErr(name, "the name contains NUL")
	}
	for seg := range strings.SplitSeq(n, "/") {
		switch seg {
		case "..":
			return "", memberErr(name, "'..' path segments are not allowed")
		case "", ".":
			return "", memberErr(name, "empty or '.' path segments are not allowed")
		}
	}
	return n, nil
}

func (r *reader) storageMember(name string, size int64, body io.Reader) error {
	key, escaped, err := KeyFromPath(name)
	if err != nil {
		return &Error{Msg: "invalid storage member name", Path: name, Detail: err.Error(), Offset: -1, Err: ErrInvalid}
	}
	if size > maxSafeInteger {
		return memberErr(name, "size %d is too large", size)
	}
	appleDouble := strings.HasPrefix(path.Base(name), "._")
	var rec *objRec
	if r.idx.listed {
		var ignore bool
		if rec, ignore, err = r.idx.member(name, key, size, appleDouble); err != nil || ignore {
			return err
		}
	} else if appleDouble {
		// Before backup.json nothing tells metadata from an object whose
		// key starts with "._"; such members are ignored.
		return nil
	}
	hashIt := rec == nil || rec.size&recHasSHA != 0
	watch := &readErrRecorder{r: body}
	var src io.Reader = watch
	if hashIt {
		if r.sha == nil {
			r.sha = sha256.New()
		}
		r.sha.Reset()
		src = io.TeeReader(src, r.sha)
	}
	m := Member{Name: name, Key: key, Size: size, Escaped: escaped}
	if err := r.v.StorageMember(r.ctx, m, src); err != nil {
		// A visitor failing because the archive itself broke off reports
		// that, not its own error.
		if watch.err != nil {
			return readErr("archive", watch.err)
		}
		return fmt.Errorf("archive: visitor: %s: %w", name, err)
	}
	if _, err := io.Copy(io.Discard, src); err != nil {
		return readErr("archive", err)
	}
	r.sum.Members++
	r.sum.MemberBytes += size
	if !hashIt {
		return nil
	}
	sum := r.sha.Sum(nil)
	if rec == nil {
		r.idx.addEarly(key, size, sum)
		return nil
	}
	if shaPrefix(sum) != rec.sha {
		return &Error{Msg: "archive member content differs from storage.objects", Path: name,
			Detail: fmt.Sprintf("sha256 of key %q differs from the listed sha256", key), Offset: -1, Err: ErrInvalid}
	}
	r.sum.VerifiedObjects++
	return nil
}

// gzipMembers reads concatenated gzip members as one stream. Unlike
// gzip.Reader's multistream mode it tells bytes after the last member that
// are not gzip at all (trailing garbage) from a cut member.
type gzipMembers struct {
	br  *bufio.Reader
	zr  *gzip.Reader
	err error
}

func (g *gzipMembers) Read(p []byte) (int, error) {
	for g.err == nil {
		n, err := g.zr.Read(p)
		if err != io.EOF {
			return n, err
		}
		b, perr := g.br.Peek(2)
		switch {
		case len(b) == 0 && perr == io.EOF:
			g.err = io.EOF
		case len(b) == 0:
			g.err = perr
		case b[0] != 0x1f || len(b) == 2 && b[1] != 0x8b:
			g.err = &Error{Msg: "archive is invalid", Detail: "unexpected data after the end of the gzip stream", Offset: -1, Err: ErrInvalid}
		case len(b) == 1:
			g.err = io.ErrUnexpectedEOF
		default:
			if err := g.zr.Reset(g.br); err != nil {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				g.err = err
			}
			g.zr.Multistream(false)
		}
		if n > 0 {
			return n, nil
		}
	}
	return 0, g.err
}

// readErrRecorder remembers the first failure of a reader other than EOF.
type readErrRecorder struct {
	r   io.Reader
	err error
}

func (e *readErrRecorder) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF && e.err == nil {
		e.err = err
	}
	return n, err
}
