package main

import (
	"context"
	"fmt"
	"time"

	"github.com/edgevault/edgevault/pkg/edgebase/edgebasetest"
)

// shape is the deployment scalerun backs up.
type shape struct {
	DOs     int   // dynamic instances workspace:ws-NNNNNN, one tasks row each
	Objects int   // R2 objects
	MinSize int64 // object i holds MinSize + i % Spread bytes
	Spread  int64
}

func (s shape) objectSize(i int) int64 { return s.MinSize + int64(i)%max(s.Spread, 1) }

// bytes is the bucket's total size.
func (s shape) bytes() int64 {
	var n int64
	for i := range s.Objects {
		n += s.objectSize(i)
	}
	return n
}

// instanceName is the i-th dynamic instance.
func instanceName(i int) string { return fmt.Sprintf("workspace:ws-%06d", i) }

var contentTypes = []string{"application/octet-stream", "image/png", "text/plain; charset=utf-8", "application/json"}

// object is the i-th R2 object: keys in both buckets, a few content
// types, bytes generated from the key (not stored on disk).
func (s shape) object(i int) edgebasetest.Object {
	bucket := "uploads"
	if i%2 == 1 {
		bucket = "avatars"
	}
	return edgebasetest.Object{Key: fmt.Sprintf("%s/scale/%03d/%07d.bin", bucket, i%1000, i),
		ContentType: contentTypes[i%len(contentTypes)], Size: s.objectSize(i), Seed: fmt.Sprintf("scale-%d", i)}
}

// seed fills the emulator: the static blocks (a few rows), s.DOs
// instances and s.Objects objects. It returns how long each part took.
func seed(ctx context.Context, emu *edgebasetest.Emulator, s shape, logf func(string, ...any)) (dos, objects time.Duration, err error) {
	if err := emu.AddUsers(ctx, edgebasetest.NumberedUsers(20)...); err != nil {
		return 0, 0, err
	}
	if err := emu.AddRows(ctx, "shared", "posts", edgebasetest.Row{"title": "hello", "body": "scale run"}); err != nil {
		return 0, 0, err
	}
	if err := emu.AddRows(ctx, "ledger", "entries", edgebasetest.Row{"amount": 1.5, "memo": "scale run"}); err != nil {
		return 0, 0, err
	}
	start := time.Now()
	for i := range s.DOs {
		name := instanceName(i)
		row := edgebasetest.Row{"title": "task of " + name, "done": i%2 == 0}
		if err := emu.AddRows(ctx, name, "tasks", row); err != nil {
			return 0, 0, err
		}
		if (i+1)%2000 == 0 {
			logf("seeded %d/%d DOs", i+1, s.DOs)
		}
	}
	dos = time.Since(start)
	start = time.Now()
	batch := make([]edgebasetest.Object, 0, 1000)
	for i := range s.Objects {
		batch = append(batch, s.object(i))
		if len(batch) == cap(batch) || i == s.Objects-1 {
			if err := emu.AddObjects(ctx, batch...); err != nil {
				return 0, 0, err
			}
			batch = batch[:0]
		}
		if (i+1)%50000 == 0 {
			logf("seeded %d/%d objects", i+1, s.Objects)
		}
	}
	return dos, time.Since(start), nil
}
