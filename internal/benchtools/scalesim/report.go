package main

import (
	"fmt"
	"io"
	"strings"
	"time"
)

func dur(s float64) string {
	return time.Duration(s * float64(time.Second)).Round(time.Second).String()
}

// variants are the changes tried when the target is missed, each from
// the given parameters.
var variants = []struct {
	name  string
	apply func(*Params)
}{
	{"assembler without read-ahead (one read at a time)", func(p *Params) { p.AssemblerPrefetch = 1 }},
	{"workerMaxConcurrency 100", func(p *Params) { p.WorkerMaxConc = 100 }},
}

func print(w io.Writer, p Params, r Result) {
	fmt.Fprintf(w, "Backup of %d DOs and %d objects (%d tasks, %d storage ranges) on the serverless stack\n\n", p.DOs, p.Objects, r.Tasks, r.Ranges)
	fmt.Fprintf(w, "%-36s %9s  %s\n", "stage", "time", "why")
	for _, s := range r.Stages {
		fmt.Fprintf(w, "%-36s %9s  %s\n", s.Name, dur(s.Seconds), s.Note)
	}
	fmt.Fprintf(w, "%-36s %9s  target %s: %s\n\n", "total", dur(r.Total), dur(p.TargetSeconds), met(r, p))
	fmt.Fprintf(w, "binding limit: %s\n", r.Binding)
	for _, f := range r.Fails[min(1, len(r.Fails)):] {
		fmt.Fprintf(w, "also: %s\n", f)
	}
	heading := "\nother settings:\n"
	if r.Total > p.TargetSeconds || len(r.Fails) > 0 {
		heading = "\nwhat would change it:\n"
	}
	{
		fmt.Fprint(w, heading)
		for _, v := range variants {
			q := p
			v.apply(&q)
			alt, err := Simulate(q)
			if err != nil {
				continue
			}
			fmt.Fprintf(w, "  %-58s total %8s, assembler %s, %s\n", v.name+":", dur(alt.Total), dur(alt.AssemblerSecs), met(alt, q))
		}
	}
	c := r.Cost
	fmt.Fprintf(w, "\ncost of one backup (us-east-1 prices):\n")
	fmt.Fprintf(w, "  Lambda  $%.4f  (%.0f GB-s arm64, %.0f requests)\n", c.Lambda, c.LambdaGBs, c.LambdaRequests)
	fmt.Fprintf(w, "  S3      $%.4f  (%.0f PUT/LIST-class, %.0f GET-class requests)\n", c.S3, c.S3Puts, c.S3Gets)
	fmt.Fprintf(w, "  SQS     $%.4f  (%.0f requests)\n", c.SQS, c.SQSRequests)
	fmt.Fprintf(w, "  storage $%.4f  (archive %.2f GB kept %.0f month(s) in S3 Standard)\n", c.Storage, r.ArchiveBytes/1e9, p.RetentionMonths)
	fmt.Fprintf(w, "  total   $%.4f (free tiers not deducted)\n", c.Total)
}

func met(r Result, p Params) string {
	switch {
	case len(r.Fails) > 0:
		return "FAILS (" + strings.SplitN(r.Fails[0], ":", 2)[0] + ")"
	case r.Total <= p.TargetSeconds:
		return "met"
	}
	return "missed"
}
