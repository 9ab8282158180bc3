package repository

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ParsePolicy reads a Policy written as comma-separated rules, the form
// the stack's context and the maintain function use:
// "last=7,hourly=24,daily=14,weekly=8,monthly=12,yearly=3,within=720h"
// (any subset; a count of -1 is unbounded; within is a Go duration).
// "" is the empty Policy, which keeps everything.
func ParsePolicy(s string) (Policy, error) {
	var p Policy
	counts := map[string]*int{"last": &p.Last, "hourly": &p.Hourly, "daily": &p.Daily,
		"weekly": &p.Weekly, "monthly": &p.Monthly, "yearly": &p.Yearly}
	seen := map[string]bool{}
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		name, v, ok := strings.Cut(f, "=")
		name, v = strings.TrimSpace(name), strings.TrimSpace(v)
		if !ok || v == "" {
			return Policy{}, fmt.Errorf("retention rule %q: want name=value", f)
		}
		if seen[name] {
			return Policy{}, fmt.Errorf("retention rule %q given twice", name)
		}
		seen[name] = true
		if name == "within" {
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return Policy{}, fmt.Errorf("retention rule within=%q: not a positive duration", v)
			}
			p.Within = d
			continue
		}
		dst := counts[name]
		if dst == nil {
			return Policy{}, fmt.Errorf("retention rule %q: unknown (last, hourly, daily, weekly, monthly, yearly, within)", name)
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < -1 || n == 0 {
			return Policy{}, fmt.Errorf("retention rule %s=%q: want a positive count or -1", name, v)
		}
		*dst = n
	}
	return p, nil
}

// String writes p in ParsePolicy's form.
func (p Policy) String() string {
	var parts []string
	for _, r := range []struct {
		name string
		n    int
	}{{"last", p.Last}, {"hourly", p.Hourly}, {"daily", p.Daily}, {"weekly", p.Weekly}, {"monthly", p.Monthly}, {"yearly", p.Yearly}} {
		if r.n != 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", r.name, r.n))
		}
	}
	if p.Within != 0 {
		parts = append(parts, "within="+p.Within.String())
	}
	return strings.Join(parts, ",")
}
