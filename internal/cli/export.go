package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/edgevault/edgevault/internal/jsonstream"
	"github.com/edgevault/edgevault/pkg/edgebase"
)

type exportOpts struct {
	conn   connFlags
	output string
}

func (a *app) exportCommand() *cobra.Command {
	var o exportOpts
	cmd := &cobra.Command{
		Use:   "export TABLE",
		Short: "Export one table's rows as a JSON array (stdout or --output)",
		Long: `Export one table through the admin export endpoint, streaming: a JSON
array laid out like the server's (two-space indentation).

A table of a dynamic DB block (one DO per instance) is merged across its
instances, which the server itself cannot do: instances are listed with the
same sources as backup create (--state-dir, Edge mode or --instances) and
their rows concatenated in instance-name order, each instance's rows in
the server's order. A notice the server attaches (views) goes to stderr.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return a.runExport(cmd.Context(), args[0], o) },
	}
	o.conn.register(cmd)
	cmd.Flags().StringVarP(&o.output, "output", "o", "", "write to this file instead of stdout")
	return cmd
}

func (a *app) runExport(ctx context.Context, table string, o exportOpts) error {
	d, err := a.connect(&o.conn, 4)
	if err != nil {
		return err
	}
	defer d.close()
	// Rows go to a temporary file first (next to --output, else in the temp
	// directory): a retried request must be able to start over, and stdout
	// cannot be taken back.
	var path string
	dir := os.TempDir()
	if o.output != "" {
		if path, err = filepath.Abs(o.output); err != nil {
			return failure("export_failed", err)
		}
		dir = filepath.Dir(path)
	} else if a.jsonOut {
		return failure("invalid_arguments", errors.New("--json needs --output: stdout is for the JSON result"))
	}
	file, err := os.CreateTemp(dir, ".edgevault-export-")
	if err != nil {
		return failure("export_failed", err)
	}
	defer os.Remove(file.Name())
	defer file.Close()
	bw := bufio.NewWriterSize(file, 256<<10)
	restart := func() error {
		if _, err := file.Seek(0, io.SeekStart); err != nil {
			return err
		}
		bw.Reset(file)
		return file.Truncate(0)
	}
	var records int64
	err = d.client.Export(ctx, table, func(body io.Reader, notice string) error {
		if err := restart(); err != nil {
			return err
		}
		if notice != "" {
			a.warn("%s", notice)
		}
		records = 0
		// Keep the server's bytes, counting the records on the way.
		return countArray(io.TeeReader(body, bw), &records)
	})
	if errors.Is(err, edgebase.ErrBadRequest) && strings.Contains(err.Error(), "instanceId") {
		if err = restart(); err == nil {
			records, err = a.exportMerged(ctx, d, table, file, bw)
		}
	}
	if err != nil {
		code := "export_failed"
		if errors.Is(err, edgebase.ErrNotFound) {
			code = "export_table_not_found"
		}
		return failure(code, err)
	}
	if err := bw.Flush(); err != nil {
		return failure("export_failed", err)
	}
	if path != "" {
		err := file.Close()
		if err == nil {
			err = os.Rename(file.Name(), path)
		}
		if err != nil {
			return failure("export_failed", err)
		}
	} else {
		if _, err := file.Seek(0, io.SeekStart); err != nil {
			return failure("export_failed", err)
		}
		if _, err := io.Copy(a.env.Stdout, file); err != nil {
			return failure("export_failed", err)
		}
	}
	if a.jsonOut {
		a.printJSON(map[string]any{"status": "success", "table": table, "records": records, "output": path})
	} else if path != "" {
		fmt.Fprintf(a.env.Stderr, "exported %d records of %s to %s\n", records, table, path)
	}
	return nil
}

// countArray validates a top-level JSON array and counts its elements.
func countArray(r io.Reader, n *int64) error {
	d := jsonstream.NewDecoder(r)
	if k, err := d.Next(); err != nil {
		return err
	} else if k != jsonstream.ArrayBegin {
		return fmt.Errorf("export reply is not a JSON array")
	}
	for {
		k, err := d.Peek()
		if err != nil {
			return err
		}
		if k == jsonstream.ArrayEnd {
			d.Next()
			return d.End()
		}
		if err := d.SkipValue(); err != nil {
			return err
		}
		*n++
	}
}

// exportMerged concatenates table's rows over every instance of the
// dynamic block that defines it, in JSON.stringify(rows, null, 2) layout.
func (a *app) exportMerged(ctx context.Context, d *deployment, table string, f *os.File, w *bufio.Writer) (int64, error) {
	cfg, _, err := d.client.Config(ctx)
	if err != nil {
		return 0, err
	}
	var block string
	for _, b := range cfg.Databases {
		for _, t := range b.Tables {
			if t.Name == table && block == "" {
				block = b.Name
			}
		}
	}
	blk, ok := cfg.Block(block)
	if !ok || !blk.Dynamic() {
		return 0, fmt.Errorf("table %q is not in a dynamic DB block; the server refused to export it", table)
	}
	names, warnings, err := d.enum.DOs(ctx, cfg)
	if err != nil {
		return 0, err
	}
	for _, w := range warnings {
		a.warn("%s", w)
	}
	var records int64
	w.WriteByte('[')
	first := true
	for _, name := range names {
		ns, _, _ := strings.Cut(name, ":")
		if ns != block || !strings.Contains(name, ":") {
			continue
		}
		// A retried dump starts this instance over from where it began.
		if err := w.Flush(); err != nil {
			return records, err
		}
		mark, err := f.Seek(0, io.SeekCurrent)
		if err != nil {
			return records, err
		}
		markRecords, markFirst := records, first
		err = d.client.DumpDO(ctx, name, edgebase.TypeDatabase, func(r io.Reader) error {
			if err := f.Truncate(mark); err != nil {
				return err
			}
			if _, err := f.Seek(mark, io.SeekStart); err != nil {
				return err
			}
			w.Reset(f)
			records, first = markRecords, markFirst
			return eachRow(r, table, func(dec *jsonstream.Decoder) error {
				if !first {
					w.WriteByte(',')
				}
				first = false
				w.WriteString("\n  ")
				records++
				return jsonstream.IndentValue(w, dec, "  ", 1)
			})
		})
		if err != nil {
			return records, fmt.Errorf("instance %s: %w", name, err)
		}
	}
	if !first {
		w.WriteByte('\n')
	}
	w.WriteByte(']')
	return records, nil
}

// eachRow walks a DO dump and calls fn positioned at each row of table.
func eachRow(r io.Reader, table string, fn func(*jsonstream.Decoder) error) error {
	d := jsonstream.NewDecoder(r)
	if k, err := d.Next(); err != nil || k != jsonstream.ObjectBegin {
		return fmt.Errorf("dump is not a JSON object: %v", err)
	}
	for {
		k, err := d.Next()
		if err != nil {
			return err
		}
		if k == jsonstream.ObjectEnd {
			return d.End()
		}
		if string(d.Bytes()) != "tables" {
			if err := d.SkipValue(); err != nil {
				return err
			}
			continue
		}
		if k, err := d.Next(); err != nil || k != jsonstream.ObjectBegin {
			return fmt.Errorf("dump tables is not an object: %v", err)
		}
		for {
			k, err := d.Next()
			if err != nil {
				return err
			}
			if k == jsonstream.ObjectEnd {
				break
			}
			if string(d.Bytes()) != table {
				if err := d.SkipValue(); err != nil {
					return err
				}
				continue
			}
			if k, err := d.Next(); err != nil || k != jsonstream.ArrayBegin {
				return fmt.Errorf("table %s is not an array: %v", table, err)
			}
			for {
				k, err := d.Peek()
				if err != nil {
					return err
				}
				if k == jsonstream.ArrayEnd {
					d.Next()
					break
				}
				if err := fn(d); err != nil {
					return err
				}
			}
		}
	}
}
