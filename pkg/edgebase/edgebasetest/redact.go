package edgebasetest

import (
	"regexp"
	"strings"
)

// The config snapshot of EdgeBase 0.4.2+ (Appendix B.3): a fail-closed
// sanitiser over the runtime config. The rules below are the ones the
// protocol document lists; the exact patterns upstream uses were not
// seen, so the matching (case-insensitive names, the regular expressions
// for secret-looking strings, where the depth and size limits cut) is
// this emulator's reading of that list.

// RedactedValue replaces every withheld value of the 0.4.2+ snapshot.
const RedactedValue = "[REDACTED]"

// Limits of the sanitiser: values nested deeper than maxRedactDepth below
// the root, and every value after the first maxRedactNodes, are withheld.
const (
	maxRedactDepth = 32
	maxRedactNodes = 20000
)

// credentialExact, credentialSuffix and credentialPrefix are the member
// names (lower-cased) whose values are withheld whatever they hold.
var (
	credentialExact = map[string]bool{
		"secret": true, "secrets": true, "token": true, "tokens": true, "apisecret": true,
		"inlinesecret": true, "credential": true, "credentials": true, "authorization": true,
		"cookie": true, "signingkey": true, "secretkey": true, "accesskey": true, "licensekey": true,
	}
	credentialSuffix = []string{"secret", "token", "tokens", "connectionstring", "accountid"}
	credentialPrefix = []string{"clientsecret", "privatekey", "apikey"}
)

func credentialKey(key string) bool {
	k := strings.ToLower(key)
	if credentialExact[k] || strings.Contains(k, "password") {
		return true
	}
	for _, s := range credentialSuffix {
		if strings.HasSuffix(k, s) {
			return true
		}
	}
	for _, p := range credentialPrefix {
		if strings.HasPrefix(k, p) {
			return true
		}
	}
	return false
}

// secretStrings match values that look like credentials wherever they
// stand: PEM private keys, JWTs, Stripe-style live/test secret keys, and
// URLs with a user:password part.
var secretStrings = []*regexp.Regexp{
	regexp.MustCompile(`-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----`),
	regexp.MustCompile(`^eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$`),
	regexp.MustCompile(`^(sk|rk)_(live|test)_[A-Za-z0-9]+$`),
	regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*://[^/?#@\s]*:[^/?#@\s]*@`),
}

func secretString(s string) bool {
	for _, re := range secretStrings {
		if re.MatchString(s) {
			return true
		}
	}
	return false
}

type redactor struct{ nodes int }

// where tracks the path facts the rules depend on.
type where struct {
	underSchema  bool // below a member named schema
	underPlugins bool // below a member named plugins or extensions
}

// redactConfig returns the 0.4.2+ snapshot of a rendered config.
func redactConfig(cfg object) any {
	r := &redactor{}
	return r.value(cfg, 0, where{})
}

func (r *redactor) value(v any, depth int, at where) any {
	if raw, ok := v.(rawJSON); ok {
		pv, err := parseJS(raw)
		if err != nil {
			return RedactedValue
		}
		v = pv
	}
	r.nodes++
	if r.nodes > maxRedactNodes || depth > maxRedactDepth {
		return RedactedValue
	}
	switch x := v.(type) {
	case jsFunction, jsUndefined:
		return RedactedValue
	case string:
		if secretString(x) {
			return RedactedValue
		}
		return x
	case []string:
		arr := make([]any, len(x))
		for i := range x {
			arr[i] = x[i]
		}
		return r.array(arr, depth, at)
	case []any:
		return r.array(x, depth, at)
	case object:
		out := make(object, 0, len(x))
		for _, m := range x {
			out = append(out, kv{m.Key, r.member(m.Key, m.Value, depth+1, at)})
		}
		return out
	}
	return v
}

func (r *redactor) array(x []any, depth int, at where) any {
	out := make([]any, len(x))
	for i, e := range x {
		out[i] = r.value(e, depth+1, at)
	}
	return out
}

func (r *redactor) member(key string, v any, depth int, at where) any {
	withheld := credentialKey(key) ||
		(at.underPlugins && key == "config") ||
		(at.underSchema && (key == "default" || key == "example" || key == "examples"))
	if withheld {
		r.nodes++
		return RedactedValue
	}
	if key == "schema" {
		at.underSchema = true
	}
	if key == "plugins" || key == "extensions" {
		at.underPlugins = true
	}
	return r.value(v, depth, at)
}
