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

// SetMemoryLimit applies DefaultMemoryLimit unless GOMEMLIMIT is set. The
// limit is soft: a run that needs more live memory gets it, at the cost
// of more collections.
func SetMemoryLimit() {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(DefaultMemoryLimit)
	}
}
