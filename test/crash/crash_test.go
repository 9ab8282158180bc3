package crash

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/pkg/blob/blobtest"
	"github.com/edgevault/edgevault/pkg/queue/queuetest"
)

// mode is how a step fails.
type mode string

const (
	fail      mode = "fail"       // the operation fails before it takes effect
	lost      mode = "lost"       // a write takes effect, its caller sees a failure
	kill      mode = "kill"       // the process dies just before the operation
	killAfter mode = "kill-after" // the process dies just after a write took effect
)

var writeOps = map[blobtest.Op]bool{blobtest.OpPut: true, blobtest.OpCreate: true, blobtest.OpReplace: true, blobtest.OpDelete: true, blobtest.OpCompose: true}

func modesOf(op blobtest.Op) []mode {
	if writeOps[op] {
		return []mode{fail, lost, kill, killAfter}
	}
	return []mode{fail, kill}
}

// arm injects m at s.
func (r *rig) arm(s step, m mode) {
	re := regexp.MustCompile("^" + regexp.QuoteMeta(s.class) + "$")
	f := blobtest.Fault{Op: s.op, Nth: s.nth, Match: func(key string) bool { return re.MatchString(classOf(r.jobID, key)) }}
	switch m {
	case lost:
		f.After = true
	case kill:
		f.Hook = func(blobtest.Call) { r.die() }
	case killAfter:
		f.After, f.Hook = true, func(blobtest.Call) { r.die() }
	}
	r.store.Inject(f)
}

// cleanSteps runs sc once without faults and lists its injection points.
func cleanSteps(t *testing.T, w *world, sc scenario) []step {
	t.Helper()
	r := newRig(t, w, sc, t.TempDir())
	defer r.close()
	job, err := r.run(context.Background())
	if err != nil {
		t.Fatalf("clean %s run: %v", sc, err)
	}
	r.checkEnd(t, job, nil, "clean run")
	return steps(r.jobID, r.store.Calls())
}

// every runs the scenario once per step and mode; short mode (go test
// without EDGEVAULT_SLOW) takes every third step, CI the whole matrix.
func every(t *testing.T, sc scenario) {
	w := getWorld(t)
	all := cleanSteps(t, w, sc)
	stride := 3
	if os.Getenv("EDGEVAULT_SLOW") == "1" {
		stride = 1
	}
	n := 0
	for i, s := range all {
		if i%stride != 0 && !sc.always(s) {
			continue
		}
		for _, m := range modesOf(s.op) {
			n++
			name := fmt.Sprintf("%s/%s#%d/%s", s.op, strings.ReplaceAll(s.class, "/", "_"), s.nth, m)
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				r := newRig(t, w, sc, t.TempDir())
				defer r.close()
				r.arm(s, m)
				job, err := r.run(context.Background())
				if r.store.Fired() == 0 {
					// The run took another path (an earlier step's retry
					// changes counts); nothing was injected, nothing to check
					// beyond a normal end.
					t.Logf("fault not reached")
				}
				r.checkEnd(t, job, err, name)
			})
		}
	}
	t.Logf("%s: %d injection points, %d runs", sc, len(all), n)
}

func TestCrashBackupEmbedded(t *testing.T) {
	every(t, scenario{kind: events.KindBackup, wiring: embedded})
}

func TestCrashBackupServerless(t *testing.T) {
	every(t, scenario{kind: events.KindBackup, wiring: serverlessW})
}

func TestCrashRestoreEmbedded(t *testing.T) {
	every(t, scenario{kind: events.KindRestore, wiring: embedded})
}

func TestCrashRestoreServerless(t *testing.T) {
	every(t, scenario{kind: events.KindRestore, wiring: serverlessW})
}

// Queue faults: a send cut short or failed at each send of the run, and
// failed receives, acks and nacks.
func TestCrashQueue(t *testing.T) {
	w := getWorld(t)
	for _, sc := range []scenario{{events.KindBackup, embedded, false}, {events.KindBackup, serverlessW, false}, {events.KindRestore, embedded, false}, {events.KindRestore, serverlessW, false}} {
		for _, c := range []struct {
			name  string
			fault queuetest.Fault
			kill  bool
		}{
			{"first-send-fails", queuetest.Fault{Op: queuetest.OpSend, Nth: 1}, false},
			{"second-send-partial", queuetest.Fault{Op: queuetest.OpSend, Nth: 2, Partial: 1}, false},
			{"third-send-kills", queuetest.Fault{Op: queuetest.OpSend, Nth: 3, Partial: 1}, true},
			{"receive-fails", queuetest.Fault{Op: queuetest.OpReceive, Nth: 2}, false},
			{"ack-fails", queuetest.Fault{Op: queuetest.OpAck, Nth: 2}, false},
			{"nack-fails", queuetest.Fault{Op: queuetest.OpNack, Times: 3}, false},
		} {
			t.Run(sc.String()+"/"+c.name, func(t *testing.T) {
				t.Parallel()
				r := newRig(t, w, sc, t.TempDir())
				defer r.close()
				f := c.fault
				if c.kill {
					f.Hook = r.die
				}
				r.tasks.Inject(f)
				job, err := r.run(context.Background())
				r.checkEnd(t, job, err, c.name)
			})
		}
	}
}

// Duplicated and reordered delivery of every task and check message (of
// archive and repository backups, and restores).
func TestCrashDuplicateAndReorder(t *testing.T) {
	w := getWorld(t)
	for _, sc := range []scenario{{events.KindBackup, embedded, false}, {events.KindBackup, serverlessW, false},
		{events.KindBackup, embedded, true}, {events.KindBackup, serverlessW, true},
		{events.KindRestore, embedded, false}, {events.KindRestore, serverlessW, false}} {
		t.Run(sc.String(), func(t *testing.T) {
			t.Parallel()
			r := newRig(t, w, sc, t.TempDir())
			defer r.close()
			r.tasks.Duplicate, r.tasks.Reorder = true, 30e6
			r.control.Duplicate, r.control.Reorder = true, 30e6
			job, err := r.run(context.Background())
			r.checkEnd(t, job, err, "duplicate and reorder")
		})
	}
}
