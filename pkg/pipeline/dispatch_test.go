package pipeline_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/pkg/pipeline"
	"github.com/edgevault/edgevault/pkg/queue/queuetest"
)

// phaseIDs are the ids of the fake plan's tasks of phase p.
func phaseIDs(phases []int, p int) []string {
	seq := 0
	var out []string
	for ph, n := range phases {
		for range n {
			seq++
			if ph == p {
				out = append(out, pipeline.TaskID(seq, fakeKind))
			}
		}
	}
	return out
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// TestAdvanceOpensPhasesInOrder: Advance opens the next phase only once
// the open one is complete, skips empty phases, and records the phase
// before sending any of its tasks. A send that fails part-way leaves the
// phase open but not queued; the next Advance re-sends exactly the tasks
// that are missing, and nothing of a later phase.
func TestAdvanceOpensPhasesInOrder(t *testing.T) {
	ctx := testContext(t)
	phases := []int{3, 25, 0, 2}
	e := newEnv(t, setup{phases: phases, noControl: true, opt: pipeline.Options{SendBatches: 1}})
	job := e.start(ctx, t, "j")
	if job.State != events.StateRunning || job.Phase != 0 || job.QueuedPhase != 0 || job.Tasks != 30 {
		t.Fatalf("started %+v", job)
	}
	first := drain(ctx, t, e.tasks)
	if got := ids(first); !slices.Equal(got, phaseIDs(phases, 0)) {
		t.Fatalf("queued %v, want phase 0's tasks", got)
	}

	// Phase 0 incomplete: nothing opens.
	e.run(ctx, t, first[:2])
	if job, err := e.eng.Advance(ctx, "j"); err != nil || job.Phase != 0 {
		t.Fatalf("advance with phase 0 incomplete: %+v %v", job, err)
	}
	if n := e.tasks.Len(); n != 0 {
		t.Fatalf("%d tasks sent while phase 0 was incomplete", n)
	}

	// Phase 0 complete: phase 1 opens, and its record is stored before
	// the first task goes out. The second batch of ten is cut after 4.
	e.run(ctx, t, first[2:])
	var atFirstSend *events.Job
	e.onSend = func([]pipeline.Message) {
		if atFirstSend == nil {
			atFirstSend = e.job(ctx, t, "j")
		}
	}
	e.taskQ.Inject(queuetest.Fault{Op: queuetest.OpSend, Nth: 2, Partial: 4})
	_, err := e.eng.Advance(ctx, "j")
	if err == nil || !errors.Is(err, queuetest.ErrInjected) {
		t.Fatalf("advance with a failing send: %v", err)
	}
	e.onSend = nil
	if atFirstSend == nil || atFirstSend.Phase != 1 || atFirstSend.QueuedPhase != 0 || atFirstSend.Dispatching == nil {
		t.Fatalf("job when phase 1's first task was sent: %+v; want phase 1 recorded, not queued, a dispatch lease", atFirstSend)
	}
	job = e.job(ctx, t, "j")
	if job.Phase != 1 || job.QueuedPhase != 0 || job.Dispatching != nil {
		t.Fatalf("after the failed send: phase %d queued %d dispatching %v; want phase 1 open, not queued, lease released",
			job.Phase, job.QueuedPhase, job.Dispatching)
	}
	sent := drain(ctx, t, e.tasks)
	if len(sent) != 14 {
		t.Fatalf("%d tasks sent before the failure, want 14", len(sent))
	}
	e.run(ctx, t, sent)

	// The next Advance sends what is missing, and only that.
	e.taskQ.Clear()
	job, err = e.eng.Advance(ctx, "j")
	if err != nil || job.QueuedPhase != 1 {
		t.Fatalf("advance after the failed send: %+v %v", job, err)
	}
	resent := drain(ctx, t, e.tasks)
	var want []string
	for _, id := range phaseIDs(phases, 1) {
		if !slices.Contains(ids(sent), id) {
			want = append(want, id)
		}
	}
	if got := ids(resent); !slices.Equal(sorted(got), want) {
		t.Fatalf("re-sent %v, want the missing %v", got, want)
	}
	// Another look at a queued, incomplete phase sends nothing.
	if _, err := e.eng.Advance(ctx, "j"); err != nil || e.tasks.Len() != 0 {
		t.Fatalf("advance of a queued phase: %v, %d sent", err, e.tasks.Len())
	}
	e.run(ctx, t, resent)

	// Phase 2 is empty: phase 3 opens next.
	job, err = e.eng.Advance(ctx, "j")
	if err != nil || job.Phase != 3 {
		t.Fatalf("after phase 1: %+v %v; want phase 3 (phase 2 has no tasks)", job, err)
	}
	last := drain(ctx, t, e.tasks)
	if got := ids(last); !slices.Equal(got, phaseIDs(phases, 3)) {
		t.Fatalf("phase 3 queued %v", got)
	}
	e.run(ctx, t, last)
	job, err = e.eng.Advance(ctx, "j")
	if err != nil || job.State != events.StateDone || job.Summary.TasksDone != 30 || job.Summary.Rows != 30 {
		t.Fatalf("final: %+v %v", job, err)
	}
	for i, tk := range e.fake.order {
		if e.fake.seenPhase[i] != tk.Phase {
			t.Fatalf("task %s of phase %d ran while phase %d was open", tk.ID, tk.Phase, e.fake.seenPhase[i])
		}
	}
	if keys := e.keysUnder(ctx, t, e.jobs.StagingKey("j")+"/"); !slices.Equal(keys, []string{e.jobs.JobKey("j")}) {
		t.Fatalf("staging of a done job: %v; want only its record", keys)
	}
}

// TestDispatchReportsTheSendError: when sending a phase's tasks fails,
// the error is the send's own (with its permanent mark), not the
// cancellation it caused in the rest of the phase.
func TestDispatchReportsTheSendError(t *testing.T) {
	ctx := testContext(t)
	e := newEnv(t, setup{phases: []int{25}, noControl: true, opt: pipeline.Options{SendBatches: 1}})
	refused := pipeline.Permanent(errors.New("the queue does not exist"))
	e.taskQ.Inject(queuetest.Fault{Op: queuetest.OpSend, Nth: 1, Err: refused})
	job, err := e.eng.Start(ctx, events.StartRequest{JobID: "j", Kind: events.KindBackup})
	if !errors.Is(err, refused) || !pipeline.IsPermanent(err) {
		t.Fatalf("start with a refused send: %v", err)
	}
	if job.State != events.StateRunning || job.QueuedPhase != -1 {
		t.Fatalf("job %+v; want running, its phase not queued", job)
	}
}

// TestLongTasksAreSentFirst: the tasks a plan marks First are queued
// before the other tasks of their phase; a resumed phase sends those not
// finished first again, and none that finished.
func TestLongTasksAreSentFirst(t *testing.T) {
	ctx := testContext(t)
	phases := []int{25}
	long := map[int]bool{13: true, 24: true, 25: true}
	e := newEnv(t, setup{phases: phases, noControl: true, first: func(seq int) bool { return long[seq] }})
	e.start(ctx, t, "j")
	all := phaseIDs(phases, 0)
	longIDs := []string{all[12], all[23], all[24]}
	sent := drain(ctx, t, e.tasks)
	if got := ids(sent); !slices.Equal(sorted(got[:3]), longIDs) || !slices.Equal(sorted(got), all) {
		t.Fatalf("queued %v, want %v first, then the others once each", got, longIDs)
	}
	e.run(ctx, t, []events.Task{sent[0], sent[3]}) // one long, one short
	if _, err := e.eng.Resume(ctx, "j"); err != nil {
		t.Fatal(err)
	}
	again := ids(drain(ctx, t, e.tasks))
	want := slices.DeleteFunc(slices.Clone(all), func(id string) bool { return id == sent[0].ID || id == sent[3].ID })
	if !slices.Equal(sorted(again), want) {
		t.Fatalf("resumed: queued %v, want %v", again, want)
	}
	for _, id := range again[:2] {
		if !slices.Contains(longIDs, id) {
			t.Fatalf("resumed: queued %v, want the two unfinished long tasks first", again)
		}
	}
}
