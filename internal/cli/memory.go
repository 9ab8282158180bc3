package cli

import (
	"os"
	"runtime/debug"
)

// DefaultMemoryLimit is the soft memory limit of the edgevault command.
// Every path streams with bounded buffers; without a limit the collector
// still lets the heap grow to twice what is live before it runs, which
// doubles the peak RSS of a large backup for nothing.
const DefaultMemoryLimit = 48 << 20

// RepositoryMemoryLimit is the soft limit once a repository is open:
// saving keeps more buffers in flight (a chunker, a compression and a
// pack buffer per stream), so less room is left for garbage (measured:
// the first snapshot of the 500-DO, 2,000-object bench seed peaks at
// 62-64 MiB RSS under DefaultMemoryLimit, 54-56 MiB under this one, in
// the same time).
const RepositoryMemoryLimit = 40 << 20

// repositoryMemoryLimit lowers the soft limit to RepositoryMemoryLimit
// unless GOMEMLIMIT is set.
func repositoryMemoryLimit() {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(RepositoryMemoryLimit)
	}
}

// SetMemoryLimit applies DefaultMemoryLimit unless GOMEMLIMIT is set. The
// limit is soft: a run that needs more live memory gets it, at the cost
// of more collections.
func SetMemoryLimit() {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(DefaultMemoryLimit)
	}
}
