package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/edgevault/edgevault/pkg/archive"
)

// Progress display modes (--progress).
const (
	progressAuto = "auto" // a bar on a terminal, nothing otherwise
	progressBar  = "bar"
	progressJSON = "json" // one JSON event per line on stderr, for other tools
	progressNone = "none"
)

// jsonProgressEvery is how often --progress json reports.
const jsonProgressEvery = time.Second

// progress shows a job's units, bytes, rate and ETA: a bar (mpb) on a
// terminal, or JSON events on stderr. Workers only bump counters; the
// display reads them on its own schedule and never blocks them.
type progress struct {
	label  string
	total  atomic.Int64
	done   atomic.Int64
	failed atomic.Int64
	bytes  atomic.Int64
	start  time.Time

	mode string
	w    io.Writer
	// bar mode
	p   *mpb.Progress
	bar *mpb.Bar
	// json mode
	stop    chan struct{}
	stopped sync.WaitGroup
	once    sync.Once
}

// newProgress picks the display from --progress: auto is a bar when
// stderr is a terminal and --json is not set.
func (a *app) newProgress(label string) *progress {
	mode := a.progressMode
	if mode == "" || mode == progressAuto {
		mode = progressNone
		if !a.jsonOut && a.env.IsTerminal(a.env.Stderr) {
			mode = progressBar
		}
	}
	return newProgressMode(a.env.Stderr, mode, label)
}

func newProgressMode(w io.Writer, mode, label string) *progress {
	p := &progress{label: label, start: time.Now(), mode: mode, w: w, stop: make(chan struct{})}
	switch mode {
	case progressBar:
		p.p = mpb.New(mpb.WithOutput(w), mpb.WithWidth(80), mpb.WithRefreshRate(150*time.Millisecond), mpb.WithAutoRefresh())
		p.bar = p.p.AddBar(0,
			mpb.PrependDecorators(decor.Name(label+" "), decor.CountersNoUnit("%d/%d units", decor.WCSyncSpace)),
			mpb.AppendDecorators(
				decor.Any(func(decor.Statistics) string { return p.rates() }, decor.WCSyncSpace),
				decor.OnComplete(decor.AverageETA(decor.ET_STYLE_GO, decor.WCSyncSpace), "done"),
			))
	case progressJSON:
		p.stopped.Add(1)
		go p.emitLoop()
	}
	return p
}

// rates is "3.2 MiB, 1.1 MiB/s, 2 failed".
func (p *progress) rates() string {
	b := p.bytes.Load()
	s := archive.HumanBytes(b)
	if el := time.Since(p.start).Seconds(); el > 0.5 {
		s += fmt.Sprintf(", %s/s", archive.HumanBytes(int64(float64(b)/el)))
	}
	if f := p.failed.Load(); f > 0 {
		s += fmt.Sprintf(", %d failed", f)
	}
	return s
}

func (p *progress) SetTotal(n int64) {
	p.total.Store(n)
	if p.bar != nil {
		p.bar.SetTotal(n, false)
	}
}

func (p *progress) AddTotal(n int64) { p.SetTotal(p.total.Add(n)) }

func (p *progress) Done(failed bool) {
	p.done.Add(1)
	if failed {
		p.failed.Add(1)
	}
	if p.bar != nil {
		p.bar.Increment()
	}
}

func (p *progress) AddBytes(n int64) { p.bytes.Add(n) }

// progressEvent is one line of --progress json.
type progressEvent struct {
	Event          string  `json:"event"` // "progress", then "end"
	Label          string  `json:"label"`
	Done           int64   `json:"done"`
	Total          int64   `json:"total"`
	Failed         int64   `json:"failed"`
	Bytes          int64   `json:"bytes"`
	ElapsedSeconds float64 `json:"elapsedSeconds"`
	BytesPerSecond int64   `json:"bytesPerSecond"`
}

func (p *progress) emit(event string) {
	el := time.Since(p.start).Seconds()
	ev := progressEvent{Event: event, Label: p.label, Done: p.done.Load(), Total: p.total.Load(), Failed: p.failed.Load(),
		Bytes: p.bytes.Load(), ElapsedSeconds: el}
	if el > 0 {
		ev.BytesPerSecond = int64(float64(ev.Bytes) / el)
	}
	b, _ := json.Marshal(ev)
	fmt.Fprintf(p.w, "%s\n", b)
}

func (p *progress) emitLoop() {
	defer p.stopped.Done()
	t := time.NewTicker(jsonProgressEvery)
	defer t.Stop()
	p.emit("progress")
	for {
		select {
		case <-p.stop:
			p.emit("end")
			return
		case <-t.C:
			p.emit("progress")
		}
	}
}

// Close stops the display, leaving the final state.
func (p *progress) Close() {
	p.once.Do(func() {
		close(p.stop)
		switch p.mode {
		case progressBar:
			if p.done.Load() >= p.total.Load() {
				p.bar.SetTotal(-1, true)
			} else {
				p.bar.Abort(false)
			}
			p.p.Wait()
		case progressJSON:
			p.stopped.Wait()
		}
	})
}
