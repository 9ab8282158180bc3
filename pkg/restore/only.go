package restore

import (
	"fmt"
	"strings"
)

// Selection is what --only restores. Without selectors everything is
// restored in the official order, with every wipe. With selectors only the
// chosen units are written, and the only data deleted is what those units
// replace:
//
//	db:NS        DO "NS", every instance DO "NS:*" (each replaced whole) and
//	             data namespace NS (its tables emptied, then filled)
//	db:NS:ID     the one instance DO "NS:ID"
//	auth         AUTH_DB (every auth table replaced), then _users_public resync
//	control      CONTROL_DB _meta (replaced)
//	storage      every archived object (uploaded over what is there)
//	storage:P    archived objects whose key starts with P
//	secrets      the archived secrets
//
// A selective restore never wipes orphan DOs, never wipes R2 (objects not
// in the archive stay), and leaves every unit not selected untouched.
type Selection struct {
	all      bool
	dbs      []string
	prefixes []string
	auth     bool
	control  bool
	secrets  bool
}

// ParseOnly parses --only values.
func ParseOnly(only []string) (Selection, error) {
	if len(only) == 0 {
		return Selection{all: true, auth: true, control: true, secrets: true, prefixes: []string{""}}, nil
	}
	var s Selection
	for _, raw := range only {
		for _, o := range strings.Split(raw, ",") {
			o = strings.TrimSpace(o)
			kind, arg, hasArg := strings.Cut(o, ":")
			switch {
			case kind == "db" && hasArg && arg != "" && !strings.HasSuffix(arg, ":"):
				s.dbs = append(s.dbs, arg)
			case kind == "storage" && !hasArg:
				s.prefixes = append(s.prefixes, "")
			case kind == "storage" && arg != "":
				s.prefixes = append(s.prefixes, arg)
			case o == "auth":
				s.auth = true
			case o == "control":
				s.control = true
			case o == "secrets":
				s.secrets = true
			default:
				return s, fmt.Errorf("--only %q: expected db:NAMESPACE, db:NAMESPACE:ID, storage, storage:PREFIX, auth, control or secrets", o)
			}
		}
	}
	return s, nil
}

// Selective reports whether only some units are restored.
func (s Selection) Selective() bool { return !s.all }

func (s Selection) do(name string) bool {
	if s.all {
		return true
	}
	ns, _, _ := strings.Cut(name, ":")
	for _, d := range s.dbs {
		if d == name || (!strings.Contains(d, ":") && d == ns) {
			return true
		}
	}
	return false
}

func (s Selection) data(ns string) bool {
	if s.all {
		return true
	}
	for _, d := range s.dbs {
		if d == ns {
			return true
		}
	}
	return false
}

func (s Selection) wantsStorage() bool { return len(s.prefixes) > 0 }
func (s Selection) wantsSecrets() bool { return s.secrets }

// Object reports whether a storage key is selected.
func (s Selection) Object(key string) bool {
	for _, p := range s.prefixes {
		if strings.HasPrefix(key, p) {
			return true
		}
	}
	return false
}

// check rejects selectors that match nothing in the archive.
func (s Selection) check(in *ingester) error {
	for _, d := range s.dbs {
		found := false
		for _, r := range in.dos {
			if sel := (Selection{dbs: []string{d}}); sel.do(r.Name) {
				found = true
				break
			}
		}
		for _, r := range in.data {
			if r.Namespace == d {
				found = true
			}
		}
		if !found {
			return fmt.Errorf("--only db:%s matches no DO and no data namespace in the archive", d)
		}
	}
	if s.auth && !s.all && in.auth == "" {
		return fmt.Errorf("--only auth: the archive has no auth data")
	}
	if s.secrets && !s.all && in.secrets == "" {
		return fmt.Errorf("--only secrets: the archive holds no secrets (or --skip-secrets was given)")
	}
	return nil
}
