package archive

import (
	"fmt"
	"strings"
)

// RowCounts splits an archive's table rows by where they live. Every
// report (create, verify, restore, remote status) prints the same
// categories through String, so their totals can be compared: a restore
// that leaves a category out says so with a zero, not a smaller total.
type RowCounts struct {
	DOs            int64 `json:"dos"`
	DataNamespaces int64 `json:"dataNamespaces"`
	Auth           int64 `json:"auth"`
	Control        int64 `json:"control"`
	// AuthShards are rows of the legacy auth.shards section, which
	// current servers do not restore.
	AuthShards int64 `json:"authShards,omitempty"`
}

// Add counts the rows of one tables-bearing value.
func (c *RowCounts) Add(s Section, rows int64) {
	switch s {
	case SectionDatabase:
		c.DOs += rows
	case SectionDataNamespace:
		c.DataNamespaces += rows
	case SectionAuthD1:
		c.Auth += rows
	case SectionControlD1:
		c.Control += rows
	case SectionAuthShard:
		c.AuthShards += rows
	}
}

// Total is the sum of every category.
func (c RowCounts) Total() int64 {
	return c.DOs + c.DataNamespaces + c.Auth + c.Control + c.AuthShards
}

// String reads "145 rows (DOs 59, data namespaces 46, auth 28, control 12)".
func (c RowCounts) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d rows (DOs %d, data namespaces %d, auth %d, control %d", c.Total(), c.DOs, c.DataNamespaces, c.Auth, c.Control)
	if c.AuthShards > 0 {
		fmt.Fprintf(&b, ", auth shards %d", c.AuthShards)
	}
	b.WriteByte(')')
	return b.String()
}
