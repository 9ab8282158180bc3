package edgebase

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// ErrRedirect is returned when the server redirects a call to another
// origin (scheme, host or port). Go's http.Client forwards custom headers
// such as X-EdgeBase-Service-Key to any host it is redirected to, so the
// client refuses instead of following: the key goes only to the configured
// deployment. Redirects within the same origin are still followed.
var ErrRedirect = errors.New("edgebase: redirect to another origin refused")

// maxRedirects matches net/http's default policy.
const maxRedirects = 10

// sameOriginOnly wraps a CheckRedirect policy (nil = net/http's default) so
// that a redirect leaving the origin of the first request fails with
// ErrRedirect.
func sameOriginOnly(next func(*http.Request, []*http.Request) error) func(*http.Request, []*http.Request) error {
	return func(req *http.Request, via []*http.Request) error {
		from := via[0].URL
		if !sameOrigin(from, req.URL) {
			return fmt.Errorf("%w: %s was redirected to %s; the service key is only sent to %s (use the final URL as --url if the move is intended)",
				ErrRedirect, via[len(via)-1].URL.Redacted(), req.URL.Redacted(), origin(from))
		}
		if next != nil {
			return next(req, via)
		}
		if len(via) >= maxRedirects {
			return fmt.Errorf("edgebase: stopped after %d redirects", maxRedirects)
		}
		return nil
	}
}

// guardRedirects returns a copy of hc whose redirect policy never leaves
// the origin; hc itself (which the caller may share) is left alone.
func guardRedirects(hc *http.Client) *http.Client {
	cp := *hc
	cp.CheckRedirect = sameOriginOnly(hc.CheckRedirect)
	return &cp
}

// sameOrigin reports whether a and b have the same scheme, host and
// effective port (80 for http, 443 for https when none is given).
func sameOrigin(a, b *url.URL) bool {
	return origin(a) == origin(b)
}

func origin(u *url.URL) string {
	scheme := strings.ToLower(u.Scheme)
	port := u.Port()
	if port == "" {
		switch scheme {
		case "http":
			port = "80"
		case "https":
			port = "443"
		}
	}
	host := strings.ToLower(u.Hostname())
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return scheme + "://" + host + ":" + port
}
