package provenance

import (
	"fmt"
	"sort"

	"github.com/edgevault/edgevault/pkg/archive"
)

// ChainReport is the outcome of CheckChain.
type ChainReport struct {
	// Problems are broken links: an archive missing between two present,
	// archives out of order, a link to nothing. Empty when the chain holds.
	Problems []string `json:"problems"`
	// Notes are facts that are not failures, e.g. a chain whose first
	// present archive links to one removed by retention.
	Notes []string `json:"notes"`
}

// CheckChain checks the links between manifests: per source, in order of
// creation, each manifest must name the digest of the one before it. A
// manifest without a link (written before chaining was enabled) after
// others breaks the chain too, since nothing then proves that no archive
// was removed before it.
func CheckChain(ms []archive.Manifest) ChainReport {
	r := ChainReport{Problems: []string{}, Notes: []string{}}
	bySource := map[string][]archive.Manifest{}
	var sources []string
	for _, m := range ms {
		k := ChainKey(m)
		if _, ok := bySource[k]; !ok {
			sources = append(sources, k)
		}
		bySource[k] = append(bySource[k], m)
	}
	sort.Strings(sources)
	for _, src := range sources {
		group := bySource[src]
		sort.SliceStable(group, func(i, j int) bool {
			if !group[i].CreatedAt.Equal(group[j].CreatedAt) {
				return group[i].CreatedAt.Before(group[j].CreatedAt)
			}
			return group[i].Archive < group[j].Archive
		})
		index := make(map[string]int, len(group))
		for i, m := range group {
			index[Digest(m)] = i
		}
		for i, m := range group {
			if i == 0 {
				if m.Previous != "" {
					r.Notes = append(r.Notes, fmt.Sprintf("%s: the chain of %s starts here; the archive it links to (manifest %s) is not in the set", m.Archive, src, short(m.Previous)))
				}
				continue
			}
			prev := group[i-1]
			if m.Previous == Digest(prev) {
				continue
			}
			k, known := index[m.Previous]
			switch {
			case m.Previous == "":
				r.Problems = append(r.Problems, fmt.Sprintf("%s has no link to the previous archive %s of %s", m.Archive, prev.Archive, src))
			case known && k > i:
				r.Problems = append(r.Problems, fmt.Sprintf("reordered link: %s links to %s, which was created after it", m.Archive, group[k].Archive))
			case known:
				r.Problems = append(r.Problems, fmt.Sprintf("reordered link: %s links to %s, not to %s which lies between them", m.Archive, group[k].Archive, prev.Archive))
			default:
				r.Problems = append(r.Problems, fmt.Sprintf("missing link: the archive %s links to (manifest %s) is not in the set; an archive between %s and %s was removed or replaced",
					m.Archive, short(m.Previous), prev.Archive, m.Archive))
			}
		}
	}
	return r
}

// ChainKey names the series a manifest belongs to: its source URL, else
// (manifests written before it was recorded) its source kind.
func ChainKey(m archive.Manifest) string {
	if m.SourceURL != "" {
		return m.SourceURL
	}
	return m.Source
}

// Err returns the report's problems as one error wrapping ErrChain.
func (r ChainReport) Err() error {
	if len(r.Problems) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrChain, joinProblems(r.Problems))
}

func joinProblems(ps []string) string {
	s := ps[0]
	for _, p := range ps[1:] {
		s += "; " + p
	}
	return s
}
