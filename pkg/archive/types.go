package archive

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinels. Every *Error wraps ErrInvalid or ErrTruncated.
var (
	// ErrInvalid marks content that breaks the v1.1 format or the archive
	// layout rules.
	ErrInvalid = errors.New("invalid backup")
	// ErrTruncated marks a file that ends early: cut JSON, gzip or tar.
	// Such errors also wrap io.ErrUnexpectedEOF.
	ErrTruncated = errors.New("truncated backup")
	// ErrOrder is returned by JSONWriter for a section written out of the
	// official key order.
	ErrOrder = errors.New("archive: section out of order")
	// ErrManifestMismatch is returned by Verify when the archive's size or
	// SHA-256 differs from its manifest.
	ErrManifestMismatch = errors.New("archive: archive does not match its manifest")
	// ErrBadManifest marks a manifest that cannot be read as one.
	ErrBadManifest = errors.New("archive: invalid manifest")
)

// Error reports a problem with a backup's content.
type Error struct {
	// Msg is the official CLI's message where one applies (for example
	// "Backup file is missing databases."), else a short description.
	Msg string
	// Path locates the problem: a JSON path such as
	// databases["shared"].tables["posts"][3] or a tar member name.
	Path string
	// Detail says exactly what is wrong there.
	Detail string
	// Offset is the byte offset in the JSON document, or -1.
	Offset int64
	// Err is ErrInvalid or ErrTruncated, possibly joined with a cause.
	Err error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("archive: ")
	b.WriteString(e.Msg)
	if e.Path != "" || e.Detail != "" {
		b.WriteString(" (")
		b.WriteString(e.Path)
		if e.Path != "" && e.Detail != "" {
			b.WriteString(": ")
		}
		b.WriteString(e.Detail)
		b.WriteString(")")
	}
	if e.Offset >= 0 {
		fmt.Fprintf(&b, " at offset %d", e.Offset)
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

func invalidf(msg, path string, off int64, format string, args ...any) *Error {
	return &Error{Msg: msg, Path: path, Detail: fmt.Sprintf(format, args...), Offset: off, Err: ErrInvalid}
}

// Header is the top-level version, timestamp and source of a backup.
type Header struct {
	Version   string `json:"version"`
	Timestamp string `json:"timestamp"` // toISOString spelling, see FormatTimestamp
	Source    string `json:"source"`    // SourceCloudflareEdge, SourceLocal or SourceDocker
}

// Object is one entry of storage.objects. SHA256 and Path are edgevault
// extras the official reader ignores.
type Object struct {
	Key         string `json:"key"` // full R2 key, <bucket>/<path>
	Size        int64  `json:"size"`
	ETag        string `json:"etag"`
	ContentType string `json:"contentType"`
	SHA256      string `json:"sha256,omitempty"` // hex SHA-256 of the object's bytes
	Path        string `json:"path,omitempty"`   // escaped member name; set only for unsafe keys
}

// Section names a big value of the document.
type Section string

// Sections, in document order.
const (
	SectionControlD1     Section = "control.d1"
	SectionAuthD1        Section = "auth.d1"
	SectionAuthShard     Section = "auth.shards"
	SectionDatabase      Section = "databases"
	SectionConfig        Section = "config"
	SectionDataNamespace Section = "dataNamespaces"
	SectionSecrets       Section = "secrets"
)

// ValueRef identifies one big value: a section, and for the map sections
// (auth.shards, databases, dataNamespaces) the map key.
type ValueRef struct {
	Section Section
	Name    string
}

func (r ValueRef) String() string {
	if r.Name == "" {
		return string(r.Section)
	}
	return string(r.Section) + "[" + quote(r.Name) + "]"
}

// TableStats describes one table of a tables object.
type TableStats struct {
	Name      string   `json:"name"`
	Rows      int64    `json:"rows"`
	EmptyRows int64    `json:"emptyRows,omitempty"` // rows that are {} (spec 8.16)
	Columns   []string `json:"columns"`             // distinct column names, in first-seen order
}

// ValueStats describes a validated big value.
type ValueStats struct {
	Section Section `json:"section"`
	Name    string  `json:"name,omitempty"`
	Bytes   int64   `json:"bytes"` // length of the value's JSON text

	// DODump (auth.shards, databases) and DataNamespaceDump fields.
	DoName     string            `json:"doName,omitempty"`
	DoType     string            `json:"doType,omitempty"`
	Namespace  string            `json:"namespace,omitempty"`
	Timestamp  string            `json:"timestamp,omitempty"`
	Schema     map[string]string `json:"schema,omitempty"`
	TableOrder []string          `json:"tableOrder,omitempty"`

	Tables    []TableStats `json:"tables,omitempty"`
	Rows      int64        `json:"rows"`
	EmptyRows int64        `json:"emptyRows,omitempty"`

	// Keys counts the members of config or secrets.
	Keys int `json:"keys,omitempty"`
	// InlineSecrets counts non-empty "inlineSecret" strings in config
	// (service keys stored in the config itself, spec 8.22).
	InlineSecrets int `json:"inlineSecrets,omitempty"`
}

func (s *ValueStats) addTable(t TableStats) {
	s.Tables = append(s.Tables, t)
	s.Rows += t.Rows
	s.EmptyRows += t.EmptyRows
}

func quote(s string) string { return fmt.Sprintf("%q", s) }
