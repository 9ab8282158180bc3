package restore

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/edgevault/edgevault/pkg/archive"
	"github.com/edgevault/edgevault/pkg/edgebase"
	"github.com/edgevault/edgevault/pkg/pipeline"
)

// Staging keys of an ingested archive (below <staging><job>/in/).
func inKey(j *pipeline.Jobs, job, name string) string { return j.StagingKey(job, "in", name) }

// ObjectKey is the staging key of a storage object's bytes. Keys are
// hashed: R2 keys are not safe as paths (spec 8.6).
func ObjectKey(j *pipeline.Jobs, job, r2key string) string {
	h := sha256.Sum256([]byte(r2key))
	return j.StagingKey(job, "in", "obj", hex.EncodeToString(h[:]))
}

func rangeKey(j *pipeline.Jobs, job string, r int) string {
	return inKey(j, job, fmt.Sprintf("objects-%06d.ndjson", r))
}

type doRecord struct {
	Name       string // map key == doName
	Part       string
	Rows       int64
	SkipTables []string
}

type dataRecord struct {
	Namespace string
	Part      string
	Rows      int64
}

// ingester is the archive.Visitor of a restore: while archive.Read
// validates the whole file, it splits it into staging parts that the
// restore tasks read, and checks every table against the target's schema.
// Nothing reaches the target before Read has returned nil.
type ingester struct {
	jobs        *pipeline.Jobs
	job         string
	target      *edgebase.Config
	skipStorage bool
	skipSecrets bool
	rangeKeys   int

	header  archive.Header
	control string
	auth    string
	secrets string
	dos     []doRecord
	data    []dataRecord
	shards  []string // auth shards holding data (not restorable)
	drift   []string
	driftN  int
	// uncompared lists archived tables the target's config snapshot does
	// not let the drift guard compare (redacted parts: unknown, never
	// missing).
	uncompared  []string
	uncomparedN int
	// internal counts server-internal storage keys in the archive, which
	// are skipped (upload-grant markers: not user data, refused by 0.4+).
	internal int64
	manifest *archive.Manifest

	ranges int
	// unsorted says storage.objects is not in strictly ascending key
	// order (lastKey is the previous entry's key).
	unsorted bool
	lastKey  string
	cur      []archive.Object
	objects  int64
	objBytes int64
	members  int64

	// Spooled staging of members (see spool.go).
	sp          *spool
	spools      int
	spooled     int64 // members in spools: always the first entries of storage.objects
	unordered   bool  // a member broke the order: the rest are staged one by one
	loaded      []archive.Object
	loadedRange int

	seq     int
	pending *stagedPut
}

const maxDrift = 200

// stagedPut streams one value into the store while the reader walks it.
type stagedPut struct {
	key  string
	pw   *io.PipeWriter
	done chan error
}

func (in *ingester) startPut(ctx context.Context, key string) io.Writer {
	pr, pw := io.Pipe()
	sp := &stagedPut{key: key, pw: pw, done: make(chan error, 1)}
	go func() {
		err := in.jobs.Store.Put(ctx, key, bufio.NewReaderSize(pr, 256<<10))
		pr.CloseWithError(err)
		sp.done <- err
	}()
	in.pending = sp
	return pw
}

func (in *ingester) finishPut(err error) error {
	sp := in.pending
	if sp == nil {
		return err
	}
	in.pending = nil
	sp.pw.CloseWithError(err)
	if perr := <-sp.done; err == nil {
		return perr
	}
	return err
}

// abort stops a value (and a spool) being staged when Read fails mid-way.
func (in *ingester) abort(err error) {
	_ = in.finishPut(err)
	if err != nil {
		_ = in.closeSpool(err)
	}
}

func (in *ingester) Header(_ context.Context, h archive.Header) error {
	in.header = h
	return nil
}

func (in *ingester) BeginValue(ctx context.Context, ref archive.ValueRef) (io.Writer, error) {
	in.seq++
	var key string
	switch ref.Section {
	case archive.SectionControlD1:
		key = inKey(in.jobs, in.job, "control.json")
		in.control = key
	case archive.SectionAuthD1:
		key = inKey(in.jobs, in.job, "auth.json")
		in.auth = key
	case archive.SectionDatabase:
		key = inKey(in.jobs, in.job, fmt.Sprintf("do-%07d.json", in.seq))
	case archive.SectionDataNamespace:
		key = inKey(in.jobs, in.job, fmt.Sprintf("data-%07d.json", in.seq))
	case archive.SectionSecrets:
		if in.skipSecrets {
			return nil, nil
		}
		key = inKey(in.jobs, in.job, "secrets.json")
		in.secrets = key
	default:
		// config is informational; auth shards are stubs on current servers.
		return nil, nil
	}
	return in.startPut(ctx, key), nil
}

func (in *ingester) EndValue(_ context.Context, ref archive.ValueRef, s archive.ValueStats) error {
	var key string
	if in.pending != nil {
		key = in.pending.key
		if err := in.finishPut(nil); err != nil {
			return err
		}
	}
	switch ref.Section {
	case archive.SectionDatabase:
		skip := ftsTables(s)
		in.dos = append(in.dos, doRecord{Name: ref.Name, Part: key, Rows: s.Rows, SkipTables: skip})
		in.checkDO(ref.Name, s, skip)
	case archive.SectionDataNamespace:
		in.data = append(in.data, dataRecord{Namespace: s.Namespace, Part: key, Rows: s.Rows})
		in.checkData(s)
	case archive.SectionAuthShard:
		if s.Rows > 0 {
			in.shards = append(in.shards, ref.Name)
		}
	}
	return nil
}

func (in *ingester) StorageObject(ctx context.Context, o archive.Object) error {
	if edgebase.IsInternalKey(o.Key) {
		in.internal++
		return nil
	}
	if in.objects > 0 && o.Key <= in.lastKey {
		in.unsorted = true
	}
	in.lastKey = o.Key
	in.objects++
	in.objBytes += o.Size
	in.cur = append(in.cur, o)
	if len(in.cur) >= in.rangeKeys {
		return in.flushRange(ctx)
	}
	return nil
}

func (in *ingester) flushRange(ctx context.Context) error {
	if len(in.cur) == 0 {
		return nil
	}
	pr, pw := io.Pipe()
	go func() {
		bw := bufio.NewWriter(pw)
		enc := json.NewEncoder(bw)
		var err error
		for _, o := range in.cur {
			if err = enc.Encode(o); err != nil {
				break
			}
		}
		if err == nil {
			err = bw.Flush()
		}
		pw.CloseWithError(err)
	}()
	err := in.jobs.Store.Put(ctx, rangeKey(in.jobs, in.job, in.ranges), pr)
	pr.CloseWithError(err)
	in.ranges++
	in.cur = in.cur[:0]
	return err
}

func (in *ingester) StorageMember(ctx context.Context, m archive.Member, r io.Reader) error {
	in.members++
	if in.skipStorage || edgebase.IsInternalKey(m.Key) {
		return nil
	}
	if !in.unordered {
		o, ok, err := in.expected(ctx, in.spooled)
		if err != nil {
			return err
		}
		if ok && o.Key == m.Key {
			return in.spoolMember(ctx, o, r)
		}
		in.unordered = true
		if err := in.closeSpool(nil); err != nil {
			return err
		}
	}
	return in.jobs.Store.Put(ctx, ObjectKey(in.jobs, in.job, m.Key), r)
}

// internalTable reports tables the server manages itself.
func internalTable(name string) bool {
	return name == "_meta" || name == "__miniflare_do_name" ||
		strings.HasPrefix(name, "sqlite_") || strings.HasPrefix(name, "_cf_")
}

// ftsTables lists <t>_fts tables of a dump that are FTS5 indexes of a
// dumped table <t>: the target rebuilds them with triggers while the base
// rows are inserted, so inserting their rows again would duplicate the
// index (spec 8.18).
func ftsTables(s archive.ValueStats) []string {
	var out []string
	for _, t := range s.Tables {
		base, ok := strings.CutSuffix(t.Name, "_fts")
		if !ok || !strings.Contains(strings.ToLower(s.Schema[t.Name]), "fts5") {
			continue
		}
		if slices.ContainsFunc(s.Tables, func(o archive.TableStats) bool { return o.Name == base }) {
			out = append(out, t.Name)
		}
	}
	return out
}

// autoColumns are added by the server to every configured table.
var autoColumns = []string{"id", "createdAt", "updatedAt"}

func (in *ingester) addDrift(format string, args ...any) {
	in.driftN++
	if len(in.drift) < maxDrift {
		in.drift = append(in.drift, fmt.Sprintf(format, args...))
	}
}

func (in *ingester) addUncompared(format string, args ...any) {
	in.uncomparedN++
	if len(in.uncompared) < maxDrift {
		in.uncompared = append(in.uncompared, fmt.Sprintf(format, args...))
	}
}

func (in *ingester) checkDO(name string, s archive.ValueStats, skip []string) {
	ns, _, _ := strings.Cut(name, ":")
	in.checkTables(fmt.Sprintf("DO %q", name), ns, s.Tables, skip)
}

func (in *ingester) checkData(s archive.ValueStats) {
	in.checkTables(fmt.Sprintf("namespace %q", s.Namespace), s.Namespace, s.Tables, nil)
}

// checkTables compares archived tables and the columns their rows use
// with the target's configured schema. Only data that would be lost or
// make the restore fail is reported: tables without rows are left alone.
// Parts the target's config snapshot withholds (redacted by EdgeBase
// 0.4.2+) are unknown, never missing: they are listed as not compared.
func (in *ingester) checkTables(unit, block string, tables []archive.TableStats, skip []string) {
	cfg := in.target
	for _, t := range tables {
		if internalTable(t.Name) || slices.Contains(skip, t.Name) || t.Rows == 0 {
			continue
		}
		switch cfg.HasTable(block, t.Name) {
		case edgebase.Missing:
			if cfg.HasBlock(block) == edgebase.Missing {
				in.addDrift("%s: DB block %q does not exist on the target; table %q (%d rows) cannot be restored", unit, block, t.Name, t.Rows)
			} else {
				in.addDrift("%s: table %q (%d rows) is not in the target's schema; the server would silently drop it", unit, t.Name, t.Rows)
			}
			continue
		case edgebase.Unknown:
			in.addUncompared("%s: table %q (%d rows): %s", unit, t.Name, t.Rows, withheld(cfg, block))
			continue
		}
		var unknown []string
		for _, c := range t.Columns {
			if slices.Contains(autoColumns, c) {
				continue
			}
			switch cfg.HasField(block, t.Name, c) {
			case edgebase.Missing:
				in.addDrift("%s: column %q of table %q is not in the target's schema; the server would reject the rows", unit, c, t.Name)
			case edgebase.Unknown:
				unknown = append(unknown, c)
			}
		}
		if len(unknown) > 0 {
			in.addUncompared("%s: columns %s of table %q: the target's config snapshot withholds the table's schema (redacted)", unit, quoteList(unknown), t.Name)
		}
	}
}

// withheld says which part of the target's config snapshot hides a table.
func withheld(cfg *edgebase.Config, block string) string {
	b, ok := cfg.Block(block)
	switch {
	case !ok:
		return "the target's config snapshot withholds its DB blocks (redacted)"
	case b.Unknown:
		return fmt.Sprintf("the target's config snapshot withholds DB block %q (redacted)", block)
	}
	return fmt.Sprintf("the target's config snapshot withholds the table list of DB block %q or the table itself (redacted)", block)
}

func quoteList(s []string) string {
	q := make([]string, len(s))
	for i, x := range s {
		q[i] = fmt.Sprintf("%q", x)
	}
	return strings.Join(q, ", ")
}
