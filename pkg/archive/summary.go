package archive

import (
	"fmt"
	"io"
	"strings"
)

const (
	maxSections = 64
	maxDumps    = 10000
	maxWarnings = 100
)

// Summary describes a backup file. Its JSON form is stable: fields are only
// ever added.
type Summary struct {
	File      string   `json:"file,omitempty"`
	Format    Format   `json:"format"`
	Bytes     int64    `json:"bytes"`            // bytes of the file read
	SHA256    string   `json:"sha256,omitempty"` // hex SHA-256 of the whole file (Verify)
	Version   string   `json:"version"`
	Timestamp string   `json:"timestamp"`
	Source    string   `json:"source"`
	Sections  []string `json:"sections"` // top-level fields, in file order

	DOs            int           `json:"dos"`        // databases entries
	AuthShards     int           `json:"authShards"` // auth.shards entries
	DataNamespaces int           `json:"dataNamespaces"`
	Dumps          []DumpSummary `json:"dumps"` // control.d1, auth.d1, each DO and namespace (the first 10000)
	DumpsOmitted   int           `json:"dumpsOmitted,omitempty"`
	Users          int64         `json:"users"` // rows of auth.d1._users
	Tables         int64         `json:"tables"`
	Rows           int64         `json:"rows"`
	RowsBy         RowCounts     `json:"rowsBy"` // Rows split by category
	EmptyRows      int64         `json:"emptyRows"`
	Config         bool          `json:"config"`
	Secrets        int           `json:"secrets"` // number of secret keys

	Objects         int64 `json:"objects"`      // storage.objects entries
	StorageBytes    int64 `json:"storageBytes"` // sum of their sizes
	Members         int64 `json:"members"`      // storage members in a .tar.gz
	MemberBytes     int64 `json:"memberBytes"`
	VerifiedObjects int64 `json:"verifiedObjects"` // members whose SHA-256 matched storage.objects
	EscapedKeys     int64 `json:"escapedKeys"`     // keys stored under storage/.edgevault-escaped/

	// Manifest is "ok" or "absent" (Verify only).
	Manifest string   `json:"manifest,omitempty"`
	Mode     string   `json:"mode,omitempty"` // file permissions (Verify only)
	Warnings []string `json:"warnings"`
}

// DumpSummary counts one tables-bearing value.
type DumpSummary struct {
	Section Section `json:"section"`
	Name    string  `json:"name,omitempty"`
	Tables  int     `json:"tables"`
	Rows    int64   `json:"rows"`
}

func (s *Summary) warn(format string, args ...any) {
	switch {
	case len(s.Warnings) < maxWarnings:
		s.Warnings = append(s.Warnings, fmt.Sprintf(format, args...))
	case len(s.Warnings) == maxWarnings:
		s.Warnings = append(s.Warnings, "further warnings omitted")
	}
}

// account adds a validated value to the summary.
func (r *reader) account(vs ValueStats) {
	s := &r.sum
	switch vs.Section {
	case SectionDatabase:
		s.DOs++
	case SectionAuthShard:
		s.AuthShards++
		r.shardRows += vs.Rows
	case SectionDataNamespace:
		s.DataNamespaces++
	case SectionConfig:
		s.Config = true
		r.inlineSecrets += vs.InlineSecrets
		return
	case SectionSecrets:
		s.Secrets = vs.Keys
		return
	}
	if len(s.Dumps) < maxDumps {
		s.Dumps = append(s.Dumps, DumpSummary{Section: vs.Section, Name: vs.Name, Tables: len(vs.Tables), Rows: vs.Rows})
	} else {
		s.DumpsOmitted++
	}
	s.Tables += int64(len(vs.Tables))
	s.Rows += vs.Rows
	s.RowsBy.Add(vs.Section, vs.Rows)
	s.EmptyRows += vs.EmptyRows
	ref := ValueRef{vs.Section, vs.Name}
	for _, t := range vs.Tables {
		if vs.Section == SectionAuthD1 && t.Name == "_users" {
			s.Users += t.Rows
		}
		if t.EmptyRows > 0 && r.emptyExample == "" {
			r.emptyExample = ref.String() + ".tables[" + quote(t.Name) + "]"
		}
		if strings.HasSuffix(t.Name, "_fts") || strings.Contains(strings.ToLower(vs.Schema[t.Name]), "fts5") {
			if len(r.ftsTables) < 5 {
				r.ftsTables = append(r.ftsTables, ref.String()+"."+t.Name)
			}
		}
	}
}

// summary finishes the Summary with warnings.
func (r *reader) summary() Summary {
	s := r.sum
	s.Version, s.Timestamp, s.Source = r.hdr.Version, r.hdr.Timestamp, r.hdr.Source
	s.Warnings = append([]string(nil), s.Warnings...)
	if s.EmptyRows > 0 {
		s.warn("%d empty {} rows (first in %s): restore must drop them, an empty INSERT fails", s.EmptyRows, r.emptyExample)
	}
	if len(r.ftsTables) > 0 {
		s.warn("FTS5 tables such as %s are re-inserted on restore after triggers already indexed the rows", strings.Join(r.ftsTables, ", "))
	}
	if r.shardRows > 0 {
		s.warn("auth.shards holds %d rows that current servers do not restore (auth lives in D1)", r.shardRows)
	}
	if r.inlineSecrets > 0 {
		s.warn("config holds %d inline service-key secrets: keep this file secret", r.inlineSecrets)
	}
	if s.EscapedKeys > 0 {
		s.warn("%d storage keys are not safe file paths and are stored under storage/%s/ (the official restore would upload them under that name)", s.EscapedKeys, escapedDir)
	}
	if r.top&topStorage != 0 {
		switch {
		case s.Format == JSON && s.Objects > 0:
			s.warn("the file lists %d storage objects but holds no object bytes: restoring storage needs the .tar.gz (or skipping storage)", s.Objects)
		case s.Objects == 0:
			s.warn("storage.objects is empty: the official CLI refuses to restore this file without --skip-storage")
		}
	}
	if s.Format == TarGz && s.Objects == 0 && (r.sawStorageDir || r.top&topStorage != 0) {
		s.warn("the archive has a storage/ directory but no objects: the official restore would wipe the target bucket")
	}
	if s.Source != "" && s.Source != SourceCloudflareEdge && s.Source != SourceLocal && s.Source != SourceDocker {
		s.warn("unknown source %q", s.Source)
	}
	if s.Sections == nil {
		s.Sections = []string{}
	}
	if s.Dumps == nil {
		s.Dumps = []DumpSummary{}
	}
	if s.Warnings == nil {
		s.Warnings = []string{}
	}
	return s
}

// WriteText writes a short human-readable summary.
func (s Summary) WriteText(w io.Writer) error {
	var b strings.Builder
	name := s.File
	if name == "" {
		name = "backup"
	}
	fmt.Fprintf(&b, "%s: %s, %s", name, s.Format, HumanBytes(s.Bytes))
	if s.SHA256 != "" {
		fmt.Fprintf(&b, ", sha256 %s", s.SHA256)
	}
	b.WriteByte('\n')
	fmt.Fprintf(&b, "  backup v%s, %s, source %s\n", s.Version, s.Timestamp, s.Source)
	fmt.Fprintf(&b, "  %d DOs, %d auth shards, %d data namespaces; %d tables, %d users\n",
		s.DOs, s.AuthShards, s.DataNamespaces, s.Tables, s.Users)
	fmt.Fprintf(&b, "  %s\n", s.RowsBy)
	fmt.Fprintf(&b, "  storage: %d objects, %s", s.Objects, HumanBytes(s.StorageBytes))
	if s.Format == TarGz {
		fmt.Fprintf(&b, " (%d members, %d checked by sha256)", s.Members, s.VerifiedObjects)
	}
	b.WriteByte('\n')
	cfg := "no"
	if s.Config {
		cfg = "yes"
	}
	fmt.Fprintf(&b, "  config: %s, secrets: %d", cfg, s.Secrets)
	if s.Mode != "" {
		fmt.Fprintf(&b, ", mode %s", s.Mode)
	}
	if s.Manifest != "" {
		fmt.Fprintf(&b, ", manifest: %s", s.Manifest)
	}
	b.WriteByte('\n')
	for _, warn := range s.Warnings {
		fmt.Fprintf(&b, "  warning: %s\n", warn)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// HumanBytes formats a byte count with binary units (1.5 MiB).
func HumanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
