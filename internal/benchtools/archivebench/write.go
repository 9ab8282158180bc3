package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/edgevault/edgevault/internal/iox"
	"github.com/edgevault/edgevault/pkg/archive"
)

// Object sizes: like R2 buckets of user uploads, mostly small and medium
// files and a few large ones (mean about 0.5 MiB, so 1 GiB is ~2000 objects).
var sizeMix = []struct {
	percent int
	size    int64
}{{40, 16 << 10}, {30, 128 << 10}, {20, 512 << 10}, {9, 2 << 20}, {1, 16 << 20}}

const (
	dos        = 8    // DO dumps
	rowsPerMiB = 4000 // generated rows are ~260 bytes
)

// runWrite builds the archive the way the assembler does: storage parts
// written independently, backup.json streamed from dump readers, then head +
// parts + trailer concatenated, and a manifest.
func runWrite(ctx context.Context, work string, size int64, parts int, out io.Writer) error {
	now := time.Now().UTC()
	// The DB sections are ~5 % of the JSON but compress about tenfold;
	// storage takes the rest of the size.
	dbBudget := size / 20
	entries, storageBytes, err := writeParts(ctx, work, size-dbBudget/10, parts, now)
	if err != nil {
		return err
	}
	jsonPath := filepath.Join(work, "backup.json")
	rows, err := writeBackupJSON(jsonPath, dbBudget, entries, now)
	if err != nil {
		return err
	}
	st, err := os.Stat(jsonPath)
	if err != nil {
		return err
	}
	name := archive.FileName(now, true)
	archivePath := filepath.Join(work, name)
	archiveSize, sha, err := assemble(archivePath, jsonPath, st.Size(), parts, now)
	if err != nil {
		return err
	}
	m := archive.Manifest{
		Version: archive.ManifestVersion, Archive: name, Format: archive.TarGz, Size: archiveSize, SHA256: sha,
		CreatedAt: now, Job: "archivebench", BackupTimestamp: archive.FormatTimestamp(now), Source: archive.SourceDocker,
		DOs: dos, DataNamespaces: 1, Rows: rows, Objects: int64(len(entries)), StorageBytes: storageBytes,
	}
	if err := archive.WriteManifestFile(archive.ManifestName(archivePath), m); err != nil {
		return err
	}
	fmt.Fprintf(out, "objects=%d storage_bytes=%d db_bytes=%d rows=%d archive_bytes=%d maxrss_self_kib=%d\n",
		len(entries), storageBytes, st.Size(), rows, archiveSize, selfMaxRSS())
	return nil
}

func partPath(work string, i int) string {
	return filepath.Join(work, fmt.Sprintf("storage-%03d.part", i))
}

// writeParts writes the storage members. Entries (key, size, SHA-256) are
// what workers report back; they are a few hundred bytes per object.
func writeParts(ctx context.Context, work string, budget int64, parts int, mtime time.Time) ([]archive.Entry, int64, error) {
	rng := rand.New(rand.NewPCG(1, 2))
	var keys []string
	var sizes []int64
	var total int64
	for i := 0; total < budget; i++ {
		n := pickSize(rng)
		n = min(n, budget-total)
		keys = append(keys, objectKey(i))
		sizes = append(sizes, n)
		total += n
	}
	var entries []archive.Entry
	for p := range parts {
		f, err := archive.CreateFile(partPath(work, p))
		if err != nil {
			return nil, 0, err
		}
		bw := bufio.NewWriterSize(f, 256<<10)
		m := archive.NewStorageMember(bw, mtime)
		for i := p; i < len(keys); i += parts {
			if err := ctx.Err(); err != nil {
				return nil, 0, err
			}
			e, err := m.Add(keys[i], sizes[i], objectData(uint64(i), sizes[i]))
			if err != nil {
				return nil, 0, err
			}
			entries = append(entries, e)
		}
		if err := m.Close(); err != nil {
			return nil, 0, err
		}
		if err := bw.Flush(); err != nil {
			return nil, 0, err
		}
		if err := f.Close(); err != nil {
			return nil, 0, err
		}
	}
	return entries, total, nil
}

func pickSize(rng *rand.Rand) int64 {
	r := rng.IntN(100)
	for _, m := range sizeMix {
		if r < m.percent {
			return m.size - m.size/10 + rng.Int64N(m.size/5) // ±10 %
		}
		r -= m.percent
	}
	return sizeMix[0].size
}

func objectKey(i int) string {
	bucket := []string{"uploads", "avatars", "documents"}[i%3]
	switch {
	case i%997 == 0:
		return fmt.Sprintf("%s/ünïcödé dir/file %05d (copy).bin", bucket, i)
	case i%1499 == 1:
		return fmt.Sprintf("%s//double-slash-%05d", bucket, i) // escaped in the archive
	}
	return fmt.Sprintf("%s/u%03d/object-%05d.bin", bucket, i%200, i)
}

// objectData is size incompressible bytes, the same for the same seed.
func objectData(seed uint64, size int64) io.Reader {
	var key [32]byte
	key[0], key[1] = byte(seed), byte(seed>>8)
	return io.LimitReader(rand.NewChaCha8(key), size)
}

// writeBackupJSON streams the document: every dump comes from a generator
// through a pipe, as a dump reply would come from the network.
func writeBackupJSON(path string, budget int64, entries []archive.Entry, now time.Time) (int64, error) {
	f, err := archive.CreateFile(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	jw, err := archive.NewJSONWriter(f, archive.Header{Timestamp: archive.FormatTimestamp(now), Source: archive.SourceDocker})
	if err != nil {
		return 0, err
	}
	rowBudget := budget * rowsPerMiB >> 20
	var rows int64
	count := func(vs archive.ValueStats, err error) error {
		rows += vs.Rows
		return err
	}
	ts := archive.FormatTimestamp(now)
	if err := count(jw.ControlD1(strings.NewReader(`{"_meta":[{"key":"plugin_version:bench","value":"1.0.0"}]}`))); err != nil {
		return 0, err
	}
	if err := count(jw.AuthD1(generate(func(w *bufio.Writer) { writeUsers(w, rowBudget/50) }))); err != nil {
		return 0, err
	}
	for d := range dos {
		name := fmt.Sprintf("do%03d", d)
		if d == 0 {
			name = "shared"
		}
		dump := generate(func(w *bufio.Writer) { writeDODump(w, name, ts, rowBudget/(dos+2), int64(d)) })
		if err := count(jw.Database(name, dump)); err != nil {
			return 0, err
		}
	}
	if err := count(jw.Config(strings.NewReader(`{"databases":{"shared":{"tables":{"items":{}}}},"storage":{"buckets":{"uploads":{}}}}`))); err != nil {
		return 0, err
	}
	ns := generate(func(w *bufio.Writer) { writeNamespace(w, ts, rowBudget/(dos+2)) })
	if err := count(jw.DataNamespace("shared", ns)); err != nil {
		return 0, err
	}
	if err := count(jw.Secrets(map[string]string{"JWT_USER_SECRET": "u", "JWT_ADMIN_SECRET": "a", "SERVICE_KEY": "k"})); err != nil {
		return 0, err
	}
	for _, e := range entries {
		o := archive.Object{Key: e.Key, Size: e.Size, ETag: e.SHA256[:32], ContentType: "application/octet-stream", SHA256: e.SHA256}
		if err := jw.StorageObject(o); err != nil {
			return 0, err
		}
	}
	if err := jw.Close(); err != nil {
		return 0, err
	}
	return rows, f.Close()
}

// generate runs fn in a goroutine and returns what it writes as a stream.
func generate(fn func(w *bufio.Writer)) io.Reader {
	pr, pw := io.Pipe()
	go func() {
		w := bufio.NewWriterSize(pw, 64<<10)
		fn(w)
		pw.CloseWithError(w.Flush())
	}()
	return pr
}

func writeUsers(w *bufio.Writer, n int64) {
	w.WriteString(`{"_users":[`)
	for i := range n {
		if i > 0 {
			w.WriteByte(',')
		}
		fmt.Fprintf(w, `{"id":"u-%08d","email":"user%d@example.test","passwordHash":"pbkdf2:sha256:100000:%x","displayName":"User %d","role":"user","verified":1,"createdAt":"2026-03-07T10:00:00.000Z"}`, i, i, i*7919, i)
	}
	w.WriteString(`],"_sessions":[],"_meta":[]}`)
}

func writeRows(w *bufio.Writer, n, seed int64) {
	blob := base64.StdEncoding.EncodeToString([]byte("some binary \x00\x01\x02 payload"))
	for i := range n {
		if i > 0 {
			w.WriteByte(',')
		}
		fmt.Fprintf(w, `{"id":"item-%d-%08d","title":"Item %d of a generated table","body":"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor \u00e9\u00e8","views":%d,"score":%d.5,"big":9007199254740993,"flag":%d,"deletedAt":null`,
			seed, i, i, i*31, i%100, i%2)
		if i%10 == 0 {
			fmt.Fprintf(w, `,"thumb":{"__blob__":true,"data":%q}`, blob)
		}
		w.WriteByte('}')
	}
}

func writeDODump(w *bufio.Writer, name, ts string, n, seed int64) {
	nameJSON, _ := json.Marshal(name)
	fmt.Fprintf(w, `{"doName":%s,"doType":"database","schema":{"items":"CREATE TABLE items (id TEXT PRIMARY KEY, title TEXT)"},"tables":{"items":[`, nameJSON)
	writeRows(w, n, seed)
	fmt.Fprintf(w, `],"_meta":[{"key":"doName","value":%s}]},"timestamp":%q}`, nameJSON, ts)
}

func writeNamespace(w *bufio.Writer, ts string, n int64) {
	w.WriteString(`{"type":"data","namespace":"shared","tables":{"posts":[`)
	writeRows(w, n, 99)
	fmt.Fprintf(w, `],"_meta":[]},"tableOrder":["posts"],"timestamp":%q}`, ts)
}

// assemble concatenates head, parts and trailer into the archive, hashing
// it on the way.
func assemble(path, jsonPath string, jsonSize int64, parts int, mtime time.Time) (int64, string, error) {
	f, err := archive.CreateFile(path)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	h := sha256.New()
	cw := &iox.CountingWriter{W: io.MultiWriter(f, h)}
	bw := bufio.NewWriterSize(cw, 256<<10)
	jf, err := os.Open(jsonPath)
	if err != nil {
		return 0, "", err
	}
	defer jf.Close()
	if err := archive.WriteHeadMember(bw, jf, jsonSize, mtime); err != nil {
		return 0, "", err
	}
	for p := range parts {
		pf, err := os.Open(partPath(filepath.Dir(path), p))
		if err != nil {
			return 0, "", err
		}
		_, err = io.Copy(bw, pf)
		pf.Close()
		if err != nil {
			return 0, "", err
		}
	}
	if err := archive.WriteTrailerMember(bw); err != nil {
		return 0, "", err
	}
	if err := bw.Flush(); err != nil {
		return 0, "", err
	}
	if err := f.Sync(); err != nil {
		return 0, "", err
	}
	return cw.N, hex.EncodeToString(h.Sum(nil)), f.Close()
}
