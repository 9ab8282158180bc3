package edgebase_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/edgevault/edgevault/pkg/edgebase"
)

func TestNormalizeContentType(t *testing.T) {
	for in, want := range map[string]string{
		"":                                "application/octet-stream",
		"   ":                             "application/octet-stream",
		"text/plain":                      "text/plain",
		"Text/HTML; charset=UTF-8":        "text/html",
		" image/PNG ":                     "image/png",
		"application/vnd.api+json;q=1":    "application/vnd.api+json",
		"text/csv; charset=utf-8":         "text/csv",
		"texthtml":                        "application/octet-stream",
		"text/":                           "application/octet-stream",
		"/plain":                          "application/octet-stream",
		"text/plain/extra":                "application/octet-stream",
		"text /plain":                     "application/octet-stream",
		"tëxt/plain":                      "application/octet-stream",
		"application/x-big":               "application/x-big",
		"multipart/form-data; boundary=x": "multipart/form-data",
	} {
		if got := edgebase.NormalizeContentType(in); got != want {
			t.Errorf("NormalizeContentType(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestInternalKeys(t *testing.T) {
	for key, want := range map[string][2]bool{
		"__edgebase_internal__/signed-upload-grants/1772877600000/0123456789abcdef0123456789abcdef": {true, true},
		"__edgebase_internal__/signed-upload-grants/":                                               {true, true},
		"__edgebase_internal__/other/x":                                                             {true, false},
		"uploads/__edgebase_internal__/x":                                                           {false, false},
		"__edgebase_internal__":                                                                     {false, false},
		"uploads/a.txt":                                                                             {false, false},
	} {
		if got := [2]bool{edgebase.IsInternalKey(key), edgebase.IsUploadGrantKey(key)}; got != want {
			t.Errorf("%q: internal, grant = %v, want %v", key, got, want)
		}
	}
}

// GetObject tells a masked type (an octet-stream attachment) from a real
// one and never reports the masked type as the object's.
func TestGetObjectReportsMaskedTypes(t *testing.T) {
	for _, tc := range []struct {
		name    string
		headers map[string]string
		want    edgebase.ObjectInfo
	}{
		{"real type", map[string]string{"Content-Type": "text/html; charset=utf-8"},
			edgebase.ObjectInfo{ContentType: "text/html; charset=utf-8", ServedContentType: "text/html; charset=utf-8"}},
		{"no type", map[string]string{},
			edgebase.ObjectInfo{ContentType: "application/octet-stream"}},
		{"octet-stream without attachment", map[string]string{"Content-Type": "application/octet-stream"},
			edgebase.ObjectInfo{ContentType: "application/octet-stream", ServedContentType: "application/octet-stream"}},
		{"masked", map[string]string{"Content-Type": "application/octet-stream", "Content-Disposition": `attachment; filename="a.html"`,
			"Content-Security-Policy": "default-src 'none'; sandbox"},
			edgebase.ObjectInfo{Masked: true, ServedContentType: "application/octet-stream"}},
		{"masked, odd file name", map[string]string{"Content-Type": "Application/Octet-Stream", "Content-Disposition": `Attachment; filename=a b;c.html`},
			edgebase.ObjectInfo{Masked: true, ServedContentType: "Application/Octet-Stream"}},
		{"attachment with a real type", map[string]string{"Content-Type": "application/pdf", "Content-Disposition": `attachment; filename="x.pdf"`},
			edgebase.ObjectInfo{ContentType: "application/pdf", ServedContentType: "application/pdf"}},
		{"inline octet-stream", map[string]string{"Content-Type": "application/octet-stream", "Content-Disposition": `inline`},
			edgebase.ObjectInfo{ContentType: "application/octet-stream", ServedContentType: "application/octet-stream"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				for k, v := range tc.headers {
					w.Header().Set(k, v)
				}
				if _, ok := tc.headers["Content-Type"]; !ok {
					w.Header()["Content-Type"] = nil // no sniffing
				}
				_, _ = io.WriteString(w, "body")
			}))
			defer srv.Close()
			c := newClient(t, srv.URL, "k", &noSleep{})
			var got edgebase.ObjectInfo
			if err := c.GetObject(context.Background(), "uploads/x", func(r io.Reader, info edgebase.ObjectInfo) error {
				got = info
				_, err := io.Copy(io.Discard, r)
				return err
			}); err != nil {
				t.Fatal(err)
			}
			tc.want.Key, tc.want.Size = "uploads/x", 4
			if got != tc.want {
				t.Fatalf("info = %+v, want %+v", got, tc.want)
			}
		})
	}
}
