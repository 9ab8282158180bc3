package archive

import (
	"bufio"
	"bytes"
	"fmt"
	"io"

	"github.com/edgevault/edgevault/internal/jsonstream"
)

// CopyTables streams a tables object ({"<table>":[{row}…],…}) from src to
// dst, validating it, leaving out the tables keep rejects (nil keeps all)
// and, with dropEmptyRows, the {} rows an INSERT cannot take (spec 8.16).
// Table names and rows are copied verbatim; only the whitespace between
// them is not. It returns the stats of the tables written: Rows counts the
// rows written, EmptyRows the {} rows seen (dropped when dropEmptyRows).
func CopyTables(dst io.Writer, src io.Reader, keep func(table string) bool, dropEmptyRows bool) ([]TableStats, error) {
	c := newTableCopier(dst, src, keep, dropEmptyRows)
	if err := c.tables("tables"); err != nil {
		return c.stats, err
	}
	return c.stats, c.finish("tables")
}

// CopyDumpTables is CopyTables for the "tables" member of a dump reply or
// dump value (a DODump, DataNamespaceDump or D1 dump reply): it writes only
// the filtered tables object and validates the rest of src as JSON.
func CopyDumpTables(dst io.Writer, src io.Reader, keep func(table string) bool, dropEmptyRows bool) ([]TableStats, error) {
	const msg = "invalid dump"
	c := newTableCopier(dst, src, keep, dropEmptyRows)
	if err := c.w.beginObject(msg, "dump", "a dump object"); err != nil {
		return nil, err
	}
	found := false
	for {
		field, ok, err := c.w.key("dump")
		if err != nil {
			return c.stats, err
		}
		if !ok {
			break
		}
		if field != "tables" {
			if err := c.w.skip("dump." + field); err != nil {
				return c.stats, err
			}
			continue
		}
		if found {
			return c.stats, invalidf(msg, "dump", c.w.d.Offset(), `duplicate field "tables"`)
		}
		found = true
		if err := c.tables("dump.tables"); err != nil {
			return c.stats, err
		}
	}
	if !found {
		return c.stats, invalidf(msg, "dump", c.w.d.Offset(), "missing tables")
	}
	return c.stats, c.finish("dump")
}

type tableCopier struct {
	w         *walker
	out       *bufio.Writer
	keep      func(string) bool
	dropEmpty bool
	stats     []TableStats

	key      bytes.Buffer // raw bytes of the current table name
	pending  bytes.Buffer // a row's opening bytes until it is known to be kept
	firstRow bool
}

func newTableCopier(dst io.Writer, src io.Reader, keep func(string) bool, dropEmpty bool) *tableCopier {
	return &tableCopier{
		w:         newWalker(jsonstream.NewDecoder(src), "tables"),
		out:       bufio.NewWriterSize(dst, 64<<10),
		keep:      keep,
		dropEmpty: dropEmpty,
	}
}

func (c *tableCopier) tables(p string) error {
	const msg = "invalid tables"
	w := c.w
	if err := w.beginObject(msg, p, "an object of tables"); err != nil {
		return err
	}
	c.out.WriteByte('{')
	seen := make(map[string]struct{})
	first := true
	for {
		k, err := w.peek(p)
		if err != nil {
			return err
		}
		if k == jsonstream.ObjectEnd {
			c.out.WriteByte('}')
			_, err := w.next(p)
			return err
		}
		c.key.Reset()
		if err := w.d.StartCopy(&c.key); err != nil {
			return w.decodeErr(p, err)
		}
		_, err = w.next(p)
		if serr := w.d.StopCopy(); err == nil && serr != nil {
			err = w.decodeErr(p, serr)
		}
		if err != nil {
			return err
		}
		name := string(w.d.Bytes())
		tp := p + "[" + quote(name) + "]"
		if _, dup := seen[name]; dup {
			return w.shape(msg, tp, "duplicate table")
		}
		seen[name] = struct{}{}
		if c.keep != nil && !c.keep(name) {
			if err := w.skip(tp); err != nil {
				return err
			}
			continue
		}
		if !first {
			c.out.WriteByte(',')
		}
		first = false
		c.out.Write(c.key.Bytes())
		c.out.WriteString(":[")
		c.firstRow = true
		t := TableStats{Name: name}
		if err := w.rows(msg, tp, &t, c); err != nil {
			return err
		}
		c.out.WriteByte(']')
		c.stats = append(c.stats, t)
	}
}

func (c *tableCopier) startRow() error {
	c.pending.Reset()
	return c.w.d.StartCopy(&c.pending)
}

func (c *tableCopier) beginRow(empty bool) (bool, error) {
	if err := c.w.d.StopCopy(); err != nil {
		return false, err
	}
	if empty && c.dropEmpty {
		return false, nil
	}
	if !c.firstRow {
		c.out.WriteByte(',')
	}
	c.firstRow = false
	c.out.Write(c.pending.Bytes())
	return true, c.w.d.StartCopy(c.out)
}

func (c *tableCopier) endRow() error { return c.w.d.StopCopy() }

func (c *tableCopier) finish(p string) error {
	if err := c.w.d.End(); err != nil {
		return c.w.decodeErr(p, err)
	}
	if err := c.out.Flush(); err != nil {
		return fmt.Errorf("archive: copy tables: %w", err)
	}
	return nil
}
