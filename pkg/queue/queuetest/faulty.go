package queuetest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/edgevault/edgevault/pkg/pipeline"
)

// Op names a Queue operation.
type Op string

// The operations a Fault can hit.
const (
	OpSend    Op = "send"
	OpReceive Op = "receive"
	OpAck     Op = "ack"
	OpNack    Op = "nack"
)

// ErrInjected is the error a Fault returns unless it names another.
var ErrInjected = errors.New("queuetest: injected fault")

// Fault describes when and how a queue operation fails.
type Fault struct {
	// Op is the operation hit ("" = every operation).
	Op Op
	// When, if set, must hold for the fault to count a call.
	When func() bool
	// Nth fires on the Nth call of Op (1-based) and only then; 0 fires on
	// every call (up to Times).
	Nth   int
	Times int
	Err   error
	// Partial, on a Send, sends this many of the messages before failing
	// (a batch cut short).
	Partial int
	// Hook runs when the fault fires (e.g. to kill the sender).
	Hook func()
}

// Faulty wraps a Queue: it injects failed or partial sends and failed
// receives, acks and nacks, and with Duplicate and Reorder it delivers
// every message twice and out of order, as an at-least-once queue may.
type Faulty struct {
	pipeline.Queue
	// Duplicate sends every message twice.
	Duplicate bool
	// Reorder delays every message by a random 0..Reorder, so messages
	// sent together arrive in any order.
	Reorder time.Duration

	mu     sync.Mutex
	faults []*armed
	counts map[Op]int
	rng    *rand.Rand
}

type armed struct {
	Fault
	seen, fired int
}

var _ pipeline.Queue = (*Faulty)(nil)

// NewFaulty wraps q; seed makes the reordering repeatable.
func NewFaulty(q pipeline.Queue, seed uint64) *Faulty {
	return &Faulty{Queue: q, counts: map[Op]int{}, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

// Inject arms f.
func (f *Faulty) Inject(fault Fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults = append(f.faults, &armed{Fault: fault})
}

// Clear disarms every fault.
func (f *Faulty) Clear() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults = nil
}

// Count reports how many calls of op were made.
func (f *Faulty) Count(op Op) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.counts[op]
}

func (f *Faulty) check(op Op) *armed {
	f.mu.Lock()
	f.counts[op]++
	var hit *armed
	for _, a := range f.faults {
		if (a.Op != "" && a.Op != op) || (a.When != nil && !a.When()) {
			continue
		}
		a.seen++
		if (a.Nth == 0 && (a.Times == 0 || a.fired < a.Times) || a.Nth > 0 && a.seen == a.Nth) && hit == nil {
			a.fired++
			hit = a
		}
	}
	f.mu.Unlock()
	if hit != nil && hit.Hook != nil {
		hit.Hook()
	}
	return hit
}

func (a *armed) err(op Op) error {
	err := a.Err
	if err == nil {
		err = ErrInjected
	}
	return fmt.Errorf("queue %s: %w", op, err)
}

// Send implements pipeline.Queue.
func (f *Faulty) Send(ctx context.Context, msgs ...pipeline.Message) error {
	if a := f.check(OpSend); a != nil {
		if n := min(a.Partial, len(msgs)); n > 0 {
			if err := f.send(ctx, msgs[:n]); err != nil {
				return err
			}
		}
		return a.err(OpSend)
	}
	return f.send(ctx, msgs)
}

func (f *Faulty) send(ctx context.Context, msgs []pipeline.Message) error {
	out := msgs
	if f.Duplicate || f.Reorder > 0 {
		out = make([]pipeline.Message, 0, 2*len(msgs))
		f.mu.Lock()
		for _, m := range msgs {
			copies := 1
			if f.Duplicate {
				copies = 2
			}
			for range copies {
				c := m
				if f.Reorder > 0 {
					c.Delay += time.Duration(f.rng.Int64N(int64(f.Reorder)))
				}
				out = append(out, c)
			}
		}
		f.mu.Unlock()
	}
	return f.Queue.Send(ctx, out...)
}

// Receive implements pipeline.Queue.
func (f *Faulty) Receive(ctx context.Context, max int, wait time.Duration) ([]pipeline.Delivery, error) {
	if a := f.check(OpReceive); a != nil {
		return nil, a.err(OpReceive)
	}
	return f.Queue.Receive(ctx, max, wait)
}

// Ack implements pipeline.Queue.
func (f *Faulty) Ack(ctx context.Context, d pipeline.Delivery) error {
	if a := f.check(OpAck); a != nil {
		return a.err(OpAck)
	}
	return f.Queue.Ack(ctx, d)
}

// Nack implements pipeline.Queue.
func (f *Faulty) Nack(ctx context.Context, d pipeline.Delivery, delay time.Duration) error {
	if a := f.check(OpNack); a != nil {
		return a.err(OpNack)
	}
	return f.Queue.Nack(ctx, d, delay)
}
