package restore

import (
	"context"
	"fmt"
	"io"

	"github.com/edgevault/edgevault/pkg/archive"
)

// Storage members are staged in spools: a few large blobs holding the
// bytes of up to rangeKeys consecutive members each, with an index that
// carries each object's key, size, content type and offset. Thousands of
// small staging files (one per object) cost more in file-system metadata
// (or S3 requests) than moving the bytes.
//
// A spool index can carry the content type only because the member
// arrives in the order of storage.objects, which the ingester checks
// member by member against the objects it has seen (archives written by
// edgevault always qualify: their members are written in listing order).
// From the first member that breaks the order on (official archives list
// objects sorted but store them in directory-walk order), members are
// staged one blob per object and uploaded by the objects-range tasks,
// which skip the objects the spools already cover.

// spoolEntry is one object in a spool.
type spoolEntry struct {
	Key         string `json:"key"`
	Size        int64  `json:"size"`
	ContentType string `json:"contentType"`
	Offset      int64  `json:"offset"`
}

// spoolIndex is the staged index of one spool.
type spoolIndex struct {
	Blob string `json:"blob"`
	// First is the position in storage.objects of the first entry.
	First   int64        `json:"first"`
	Entries []spoolEntry `json:"entries"`
}

const maxSpoolBytes = 256 << 20

func spoolKey(in *ingester, n int) string {
	return inKey(in.jobs, in.job, fmt.Sprintf("spool-%06d", n))
}
func spoolIndexKey(in *ingester, n int) string {
	return inKey(in.jobs, in.job, fmt.Sprintf("spool-%06d.json", n))
}

// spool is the spool being written.
type spool struct {
	pw    *io.PipeWriter
	done  chan error
	index spoolIndex
	size  int64
}

// expected returns storage.objects entry i, loading its range file when
// it has already been flushed; ok is false when the listing has no entry
// i (yet).
func (in *ingester) expected(ctx context.Context, i int64) (archive.Object, bool, error) {
	flushed := int64(in.ranges) * int64(in.rangeKeys)
	if i >= flushed {
		j := i - flushed
		if j < int64(len(in.cur)) {
			return in.cur[j], true, nil
		}
		return archive.Object{}, false, nil
	}
	r := int(i / int64(in.rangeKeys))
	if in.loadedRange != r {
		objs, err := readObjects(ctx, in.jobs, rangeKey(in.jobs, in.job, r))
		if err != nil {
			return archive.Object{}, false, err
		}
		in.loaded, in.loadedRange = objs, r
	}
	j := i - int64(r)*int64(in.rangeKeys)
	if j >= int64(len(in.loaded)) {
		return archive.Object{}, false, nil
	}
	return in.loaded[j], true, nil
}

// spoolMember appends a member that is the next storage.objects entry to
// the current spool, starting a new one when it is full.
func (in *ingester) spoolMember(ctx context.Context, o archive.Object, r io.Reader) error {
	if in.sp != nil && (len(in.sp.index.Entries) >= in.rangeKeys || in.sp.size >= maxSpoolBytes) {
		if err := in.closeSpool(nil); err != nil {
			return err
		}
	}
	if in.sp == nil {
		pr, pw := io.Pipe()
		sp := &spool{pw: pw, done: make(chan error, 1), index: spoolIndex{Blob: spoolKey(in, in.spools), First: in.spooled}}
		go func() {
			err := in.jobs.Store.Put(ctx, sp.index.Blob, pr)
			pr.CloseWithError(err)
			sp.done <- err
		}()
		in.sp = sp
	}
	n, err := io.Copy(in.sp.pw, r)
	if err != nil {
		return err
	}
	if n != o.Size {
		return fmt.Errorf("storage member %q holds %d bytes, storage.objects says %d", o.Key, n, o.Size)
	}
	in.sp.index.Entries = append(in.sp.index.Entries, spoolEntry{Key: o.Key, Size: n, ContentType: o.ContentType, Offset: in.sp.size})
	in.sp.size += n
	in.spooled++
	return nil
}

// closeSpool finishes the current spool (cause != nil aborts it).
func (in *ingester) closeSpool(cause error) error {
	sp := in.sp
	if sp == nil {
		return cause
	}
	in.sp = nil
	sp.pw.CloseWithError(cause)
	err := <-sp.done
	if cause != nil {
		return cause
	}
	if err != nil {
		return err
	}
	if err := in.jobs.PutJSON(context.Background(), spoolIndexKey(in, in.spools), sp.index); err != nil {
		return err
	}
	in.spools++
	return nil
}
