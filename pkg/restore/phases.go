package restore

import (
	"fmt"
	"strings"

	"github.com/edgevault/edgevault/events"
)

// Phases of a restore, in the protocol's order (spec 5.3). A phase opens
// only when every task of the one before it is done; the tasks of a phase
// run in parallel. Wipes sit in phases of their own, before the writes
// they would otherwise destroy.
const (
	PhasePrime       = iota // touch D1 tables a never-used target lacks
	PhaseControlD1          // restore-control-d1 (wipes CONTROL_DB._meta)
	PhaseAuthD1             // restore-d1 (wipes every auth table)
	PhaseOrphans            // wipe-do of target DOs the archive lacks
	PhaseDOs                // restore-do per DB DO (each replaced whole)
	PhaseData               // restore-data per namespace (wipes its tables)
	PhaseWipeStorage        // restore-storage?action=wipe
	PhasePutStorage         // restore-storage?action=put per object
	PhaseResync             // resync-users-public (warning only)
	PhaseSecrets            // secrets, last (warning only)
	numPhases
)

var phaseNames = [numPhases]string{
	"prime D1 tables", "control D1", "auth D1", "orphan DO wipe", "DB DOs",
	"data namespaces", "storage wipe", "storage objects", "users resync", "secrets",
}

// PhaseName names a phase for messages.
func PhaseName(p int) string {
	if p < 0 || p >= numPhases {
		return fmt.Sprintf("phase %d", p)
	}
	return phaseNames[p]
}

// TargetState describes, for a restore that stopped in its open phase,
// what has happened to the target: phases before it are complete, the
// open one is partial, later ones did not start.
func TargetState(job *events.Job) string {
	var done, partial, untouched []string
	for p := 0; p < numPhases; p++ {
		if p >= len(job.PhaseTasks) || job.PhaseTasks[p] == 0 || p == PhasePrime {
			continue
		}
		switch {
		case p < job.Phase:
			done = append(done, phaseNames[p])
		case p == job.Phase:
			partial = append(partial, phaseNames[p])
		default:
			untouched = append(untouched, phaseNames[p])
		}
	}
	var b strings.Builder
	if len(done) > 0 {
		fmt.Fprintf(&b, "completed: %s. ", strings.Join(done, ", "))
	}
	if len(partial) > 0 {
		fmt.Fprintf(&b, "partially done (stopped here): %s. ", strings.Join(partial, ", "))
	}
	if len(untouched) > 0 {
		fmt.Fprintf(&b, "not started: %s. ", strings.Join(untouched, ", "))
	}
	if len(done)+len(partial) == 0 {
		return "the target was not changed."
	}
	b.WriteString("The target is partially restored; fix the cause and run the restore again (every step is repeatable).")
	return b.String()
}
