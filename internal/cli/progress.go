package cli

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgevault/edgevault/pkg/archive"
)

// progress draws a one-line bar on a terminal: units done / total, bytes
// moved and throughput. It redraws on a ticker, so workers only bump
// counters and never wait on the terminal.
type progress struct {
	w       io.Writer
	label   string
	total   atomic.Int64
	done    atomic.Int64
	failed  atomic.Int64
	bytes   atomic.Int64
	start   time.Time
	stop    chan struct{}
	stopped sync.WaitGroup
	enabled bool
}

func newProgress(w io.Writer, enabled bool, label string) *progress {
	p := &progress{w: w, label: label, start: time.Now(), stop: make(chan struct{}), enabled: enabled}
	if enabled {
		p.stopped.Add(1)
		go p.loop()
	}
	return p
}

func (p *progress) SetTotal(n int64) { p.total.Store(n) }
func (p *progress) AddTotal(n int64) { p.total.Add(n) }
func (p *progress) Done(failed bool) {
	p.done.Add(1)
	if failed {
		p.failed.Add(1)
	}
}
func (p *progress) AddBytes(n int64) { p.bytes.Add(n) }

func (p *progress) loop() {
	defer p.stopped.Done()
	t := time.NewTicker(150 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			p.draw(true)
			return
		case <-t.C:
			p.draw(false)
		}
	}
}

func (p *progress) draw(final bool) {
	total, done := p.total.Load(), p.done.Load()
	const width = 28
	filled := 0
	if total > 0 {
		filled = int(min(done, total) * width / total)
	}
	el := time.Since(p.start).Seconds()
	rate := ""
	if el > 0.5 {
		rate = fmt.Sprintf(" %s/s", archive.HumanBytes(int64(float64(p.bytes.Load())/el)))
	}
	fail := ""
	if f := p.failed.Load(); f > 0 {
		fail = fmt.Sprintf(" %d failed", f)
	}
	line := fmt.Sprintf("\r%s [%s%s] %d/%d units  %s%s%s  %.0fs ", p.label,
		strings.Repeat("=", filled), strings.Repeat(" ", width-filled), done, total,
		archive.HumanBytes(p.bytes.Load()), rate, fail, el)
	fmt.Fprint(p.w, line+"\x1b[K")
	if final {
		fmt.Fprintln(p.w)
	}
}

// Close stops redrawing and leaves the final state on its own line.
func (p *progress) Close() {
	if !p.enabled {
		return
	}
	select {
	case <-p.stop:
		return
	default:
	}
	close(p.stop)
	p.stopped.Wait()
}
