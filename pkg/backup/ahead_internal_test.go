package backup

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/pkg/blob/fs"
	"github.com/edgevault/edgevault/pkg/pipeline"
)

func planOf(t *testing.T, n int) *pipeline.Jobs {
	t.Helper()
	st, err := fs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	j, err := pipeline.NewJobs(st, "staging/", "archives/", time.Now)
	if err != nil {
		t.Fatal(err)
	}
	_, err = j.WritePlan(context.Background(), "job", func(emit func(events.Task) error) error {
		for i := range n {
			if err := emit(events.Task{Job: "job", ID: fmt.Sprintf("t%04d", i), Kind: events.TaskDO, Unit: fmt.Sprint(i)}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// Tasks are prepared ahead, concurrently, used in plan order, with at most
// n+1 prepared values alive; a failure stops the walk and every prepared
// value is released.
func TestEachAhead(t *testing.T) {
	ctx := context.Background()
	j := planOf(t, 300)
	var mu sync.Mutex
	alive, peak, released := 0, 0, 0
	prepare := func(_ context.Context, tk events.Task) (string, error) {
		mu.Lock()
		alive++
		peak = max(peak, alive)
		mu.Unlock()
		time.Sleep(time.Millisecond)
		if tk.Unit == "250" {
			return "", errors.New("part 250 is missing")
		}
		return tk.Unit, nil
	}
	release := func(string) {
		mu.Lock()
		alive--
		released++
		mu.Unlock()
	}
	next := 0
	use := func(tk events.Task, v string) error {
		if v != fmt.Sprint(next) || tk.Unit != v {
			return fmt.Errorf("got %s (%s), want %d", v, tk.Unit, next)
		}
		next++
		return nil
	}
	err := eachAhead(ctx, j, "job", 8, prepare, use, release)
	if err == nil || err.Error() != "part 250 is missing" {
		t.Fatalf("err %v, want the failure of part 250", err)
	}
	if next != 250 {
		t.Errorf("used %d tasks in order, want 250", next)
	}
	// prepare failed for one value, which is not released.
	if peak > 9 || alive != 1 {
		t.Errorf("peak %d prepared values alive (n+1 = 9), %d left unreleased (want only the failed one)", peak, alive)
	}
	next = 0
	if err := eachAhead(ctx, planOf(t, 50), "job", 8, prepare, use, release); err != nil || next != 50 {
		t.Fatalf("a clean walk: %v, %d used", err, next)
	}
}
