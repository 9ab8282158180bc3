package drill

import (
	"fmt"
	"sort"
	"time"

	"github.com/edgevault/edgevault/pkg/archive"
	"github.com/edgevault/edgevault/pkg/edgebase"
)

// MaxDifferences bounds the differences a report lists; the rest are
// counted.
const MaxDifferences = 1000

// Report is a drill's outcome.
type Report struct {
	Archive    string    `json:"archive"`
	Target     string    `json:"target"`
	Passed     bool      `json:"passed"`
	StartedAt  time.Time `json:"startedAt"`
	FinishedAt time.Time `json:"finishedAt"`
	// Counts of what the archive holds and was compared.
	DOs            int   `json:"dos"`
	DataNamespaces int   `json:"dataNamespaces"`
	Tables         int   `json:"tables"`
	Rows           int64 `json:"rows"`
	Users          int64 `json:"users"`
	Objects        int64 `json:"objects"`
	ObjectBytes    int64 `json:"objectBytes"`
	// Units lists every compared unit, table by table.
	Units []UnitReport `json:"units"`
	// Differences name each mismatch, first ones first.
	Differences        []string `json:"differences"`
	DifferencesOmitted int      `json:"differencesOmitted"`
	// NotCompared says what the drill could not compare and why.
	NotCompared []string `json:"notCompared"`
	// ArchiveSHA256 is the archive's manifest SHA-256, when it has one,
	// binding the report to the bytes that were drilled.
	ArchiveSHA256 string `json:"archiveSha256,omitempty"`
	// Signature signs every other field (provenance.SignReport).
	Signature *archive.ManifestSignature `json:"signature,omitempty"`
}

// ReportName is where a drill's report is kept beside its archive.
func ReportName(archiveName string) string { return archiveName + ".drill.json" }

// UnitReport is one unit's tables on both sides.
type UnitReport struct {
	UnitID
	Missing bool          `json:"missing,omitempty"`
	Tables  []TableReport `json:"tables"`
}

// TableReport is one table on both sides.
type TableReport struct {
	Name       string `json:"name"`
	Rows       int64  `json:"rows"`
	Hash       string `json:"hash"`
	TargetRows int64  `json:"targetRows"`
	TargetHash string `json:"targetHash"`
	Match      bool   `json:"match"`
}

func (r *Report) differ(format string, args ...any) {
	if len(r.Differences) >= MaxDifferences {
		r.DifferencesOmitted++
		return
	}
	r.Differences = append(r.Differences, fmt.Sprintf(format, args...))
}

// Compare compares the archive's inventory with the target's. Tables the
// restore does not reproduce verbatim (Skipped) are left out; a table
// empty on both sides, or present on one side only but empty, matches.
func Compare(arch, tgt *Inventory) *Report {
	r := &Report{Units: []UnitReport{}, Differences: []string{}, NotCompared: []string{
		"tables _meta, __miniflare_do_name, sqlite_*, _cf_*, _users_public and *_fts (written or rebuilt by the server itself)"}}
	for _, id := range arch.UnitIDs() {
		want := arch.Units[id]
		got, present := tgt.Units[id]
		ur := UnitReport{UnitID: id, Tables: []TableReport{}}
		switch id.Kind {
		case KindDO:
			r.DOs++
		case KindNamespace:
			r.DataNamespaces++
		}
		if t := want["_users"]; id.Kind == KindAuth && t != nil {
			r.Users = t.Rows
		}
		if !present || got == nil || (id.Kind == KindDO && rowsOf(got) == 0) {
			if rows := rowsOf(want); rows > 0 || (id.Kind == KindDO && got == nil) {
				ur.Missing = true
				r.differ("%s is missing on the target (the archive has %d rows in it)", id, rows)
			}
			if got == nil {
				got = Tables{}
			}
		}
		for _, name := range tableNames(want, got) {
			if Skipped(name) {
				continue
			}
			w, g := want[name], got[name]
			if w == nil {
				w = &TableSum{}
			}
			if g == nil {
				g = &TableSum{}
			}
			tr := TableReport{Name: name, Rows: w.Rows, Hash: w.Hash(), TargetRows: g.Rows, TargetHash: g.Hash()}
			tr.Match = tr.Rows == tr.TargetRows && tr.Hash == tr.TargetHash
			r.Tables++
			r.Rows += w.Rows
			if !tr.Match && !ur.Missing {
				if tr.Rows != tr.TargetRows {
					r.differ("%s table %s: the target has %d rows, the archive %d", id, name, tr.TargetRows, tr.Rows)
				} else {
					r.differ("%s table %s: %d rows on both sides, but their content differs", id, name, tr.Rows)
				}
			}
			ur.Tables = append(ur.Tables, tr)
		}
		r.Units = append(r.Units, ur)
	}
	compareObjects(r, arch, tgt)
	r.Passed = len(r.Differences) == 0 && r.DifferencesOmitted == 0
	return r
}

func compareObjects(r *Report, arch, tgt *Inventory) {
	if !arch.HasStorage {
		if len(arch.Objects) > 0 {
			r.NotCompared = append(r.NotCompared, fmt.Sprintf("%d storage objects: the archive lists them without their bytes", len(arch.Objects)))
		}
		return
	}
	if tgt.MaskedTypes > 0 {
		r.NotCompared = append(r.NotCompared, fmt.Sprintf("the content types of %d objects: the target's server does not show them", tgt.MaskedTypes))
	}
	keys := make([]string, 0, len(arch.Objects))
	for k := range arch.Objects {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		w := arch.Objects[k]
		r.Objects++
		r.ObjectBytes += w.Size
		g, ok := tgt.Objects[k]
		switch {
		case !ok:
			r.differ("object %s is missing on the target", k)
		case g.Size != w.Size:
			r.differ("object %s: the target has %d bytes, the archive %d", k, g.Size, w.Size)
		case w.SHA256 != "" && g.SHA256 != w.SHA256:
			r.differ("object %s: its content differs (sha256 %s on the target, %s in the archive)", k, short(g.SHA256), short(w.SHA256))
		}
		if ok && g.ContentType != "" && edgebase.NormalizeContentType(g.ContentType) != edgebase.NormalizeContentType(w.ContentType) {
			r.differ("object %s: content type %q on the target, %q in the archive", k, g.ContentType, w.ContentType)
		}
	}
	extra := make([]string, 0)
	for k := range tgt.Objects {
		if _, ok := arch.Objects[k]; !ok {
			extra = append(extra, k)
		}
	}
	sort.Strings(extra)
	for _, k := range extra {
		r.differ("object %s is on the target but not in the archive", k)
	}
}

func rowsOf(ts Tables) int64 {
	var n int64
	for name, t := range ts {
		if !Skipped(name) {
			n += t.Rows
		}
	}
	return n
}

func tableNames(a, b Tables) []string {
	seen := map[string]bool{}
	var names []string
	for _, ts := range []Tables{a, b} {
		for n := range ts {
			if !seen[n] {
				seen[n] = true
				names = append(names, n)
			}
		}
	}
	sort.Strings(names)
	return names
}

func short(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}
