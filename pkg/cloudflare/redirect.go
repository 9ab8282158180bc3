package cloudflare

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// maxRedirects matches net/http's default policy.
const maxRedirects = 10

// sameOriginOnly wraps a CheckRedirect policy (nil = net/http's default)
// so that a redirect leaving the origin of the first request fails with
// ErrRedirect. net/http drops Authorization only when the host name
// changes: a redirect to another port or from https to http of the same
// host would still carry the API token.
func sameOriginOnly(next func(*http.Request, []*http.Request) error) func(*http.Request, []*http.Request) error {
	return func(req *http.Request, via []*http.Request) error {
		from := via[0].URL
		if origin(from) != origin(req.URL) {
			return fmt.Errorf("%w: %s was redirected to %s; the API token is only sent to %s",
				ErrRedirect, via[len(via)-1].URL.Redacted(), req.URL.Redacted(), origin(from))
		}
		if next != nil {
			return next(req, via)
		}
		if len(via) >= maxRedirects {
			return fmt.Errorf("cloudflare: stopped after %d redirects", maxRedirects)
		}
		return nil
	}
}

// guardRedirects returns a copy of hc with sameOriginOnly in front of its
// redirect policy; hc itself (which the caller may share) is left alone.
func guardRedirects(hc *http.Client) *http.Client {
	cp := *hc
	cp.CheckRedirect = sameOriginOnly(hc.CheckRedirect)
	return &cp
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
