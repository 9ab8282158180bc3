package restore

import (
	"bytes"
	"fmt"
	"io"

	"github.com/edgevault/edgevault/internal/jsonstream"
)

// chunkTables splits a tables object into tables objects of at most
// limit bytes (a single larger row still goes alone), calling fn with each
// and the number of rows in it. Empty tables are left out (the wipe that
// precedes the chunks already emptied them) and so are {} rows (spec 8.16).
func chunkTables(r io.Reader, limit int, fn func(body []byte, rows int64) error) error {
	d := jsonstream.NewDecoder(r)
	if k, err := d.Next(); err != nil {
		return err
	} else if k != jsonstream.ObjectBegin {
		return fmt.Errorf("tables: expected an object, got %s", k)
	}
	var (
		chunk bytes.Buffer
		row   bytes.Buffer
		rows  int64
		head  []byte
	)
	flush := func() error {
		if rows == 0 {
			return nil
		}
		chunk.WriteString("]}")
		err := fn(chunk.Bytes(), rows)
		chunk.Reset()
		rows = 0
		return err
	}
	for {
		k, err := d.Next()
		if err != nil {
			return err
		}
		if k == jsonstream.ObjectEnd {
			break
		}
		head, err = jsonstream.AppendString(append(head[:0], '{'), string(d.Bytes()))
		if err != nil {
			return err
		}
		head = append(head, ':', '[')
		if k, err := d.Next(); err != nil {
			return err
		} else if k != jsonstream.ArrayBegin {
			return fmt.Errorf("tables: table %q is not an array", head)
		}
		for {
			k, err := d.Peek()
			if err != nil {
				return err
			}
			if k == jsonstream.ArrayEnd {
				if _, err := d.Next(); err != nil {
					return err
				}
				break
			}
			row.Reset()
			if _, err := d.CopyValue(&row); err != nil {
				return err
			}
			if isEmptyObject(row.Bytes()) {
				continue
			}
			if rows > 0 && chunk.Len()+row.Len()+3 > limit {
				if err := flush(); err != nil {
					return err
				}
			}
			if rows == 0 {
				chunk.Write(head)
			} else {
				chunk.WriteByte(',')
			}
			chunk.Write(row.Bytes())
			rows++
		}
		if err := flush(); err != nil {
			return err
		}
	}
	return d.End()
}

func isEmptyObject(b []byte) bool {
	b = bytes.TrimSpace(b)
	return len(b) >= 2 && b[0] == '{' && b[len(b)-1] == '}' && len(bytes.TrimSpace(b[1:len(b)-1])) == 0
}
