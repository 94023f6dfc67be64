package dashboard

import (
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"
)

func newHandler(t *testing.T, cfg Config) http.Handler {
	t.Helper()
	h, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return h
}

func serve(h http.Handler, method, target string, header http.Header) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestServesThePage(t *testing.T) {
	h := newHandler(t, Config{SessionTTL: 90 * time.Second})
	tests := []struct {
		name, method, target string
		wantStatus           int
		wantType             string
		wantBody             string
	}{
		{"page", "GET", "/admin/", 200, "text/html; charset=utf-8", `<meta name="presenced-heartbeat-ms" content="30000">`},
		{"page HEAD", "HEAD", "/admin/", 200, "text/html; charset=utf-8", ""},
		{"script", "GET", "/admin/app.js", 200, "text/javascript; charset=utf-8", "admin/events/ticket/"},
		{"styles", "GET", "/admin/app.css", 200, "text/css; charset=utf-8", "prefers-reduced-motion"},
		{"index.html by name is not a second URL", "GET", "/admin/index.html", 404, "", ""},
		{"unknown file", "GET", "/admin/nope.js", 404, "", ""},
		{"directory traversal", "GET", "/admin/../dashboard.go", 404, "", ""},
		{"other prefix", "GET", "/administrator/", 404, "", ""},
		{"POST", "POST", "/admin/", 405, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := serve(h, tt.method, tt.target, nil)
			if rec.Code != tt.wantStatus {
				t.Fatalf("status: got %d, want %d", rec.Code, tt.wantStatus)
			}
			if tt.wantType != "" {
				if got := rec.Header().Get("Content-Type"); got != tt.wantType {
					t.Errorf("Content-Type: got %q, want %q", got, tt.wantType)
				}
			}
			if !strings.Contains(rec.Body.String(), tt.wantBody) {
				t.Errorf("body does not contain %q", tt.wantBody)
			}
			if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
				t.Errorf("Content-Security-Policy: got %q", csp)
			}
			for k, want := range map[string]string{"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"} {
				if got := rec.Header().Get(k); got != want {
					t.Errorf("%s: got %q, want %q", k, got, want)
				}
			}
		})
	}
	if got := serve(h, "POST", "/admin/", nil).Header().Get("Allow"); got != "GET, HEAD" {
		t.Errorf("405 Allow: got %q, want GET, HEAD", got)
	}
}

func TestRedirectsToTheSlash(t *testing.T) {
	h := newHandler(t, Config{})
	rec := serve(h, "GET", "/admin", nil)
	if rec.Code != http.StatusMovedPermanently || rec.Header().Get("Location") != "/admin/" {
		t.Errorf("got %d to %q, want 301 to /admin/", rec.Code, rec.Header().Get("Location"))
	}
}

func TestRevalidation(t *testing.T) {
	h := newHandler(t, Config{})
	first := serve(h, "GET", "/admin/app.js", nil)
	etag := first.Header().Get("ETag")
	if etag == "" || first.Header().Get("Cache-Control") != "no-cache" {
		t.Fatalf("ETag %q, Cache-Control %q: want an ETag and no-cache", etag, first.Header().Get("Cache-Control"))
	}
	if rec := serve(h, "GET", "/admin/app.js", http.Header{"If-None-Match": {etag}}); rec.Code != http.StatusNotModified {
		t.Errorf("If-None-Match: got %d, want 304", rec.Code)
	}
}

func TestHeartbeatInterval(t *testing.T) {
	for _, tt := range []struct {
		ttl  time.Duration
		want string
	}{
		{0, "40000"},          // default TTL 120s
		{time.Second, "1000"}, // never more often than once a second
		{10 * time.Minute, "200000"},
	} {
		h := newHandler(t, Config{SessionTTL: tt.ttl})
		want := `content="` + tt.want + `"`
		if body := serve(h, "GET", "/admin/", nil).Body.String(); !strings.Contains(body, want) {
			t.Errorf("TTL %v: page lacks %s", tt.ttl, want)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	for _, cfg := range []Config{{SessionTTL: -time.Second}, {Prefix: "admin/"}, {Prefix: "/admin"}} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v): got no error", cfg)
		}
	}
	h := newHandler(t, Config{Prefix: "/ops/dashboard/"})
	if rec := serve(h, "GET", "/ops/dashboard/app.css", nil); rec.Code != http.StatusOK {
		t.Errorf("custom prefix: got %d, want 200", rec.Code)
	}
}

// TestSelfContained checks the page needs nothing but this binary: no
// third-party URL, no inline script or style (the CSP forbids them), and
// every file the page links exists.
func TestSelfContained(t *testing.T) {
	external := regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}`)
	err := fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := static.ReadFile(p)
		if err != nil {
			return err
		}
		if m := external.Find(b); m != nil {
			t.Errorf("%s refers to an external URL: %s", p, m)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	index, _ := static.ReadFile("static/index.html")
	page := string(index)
	inline := regexp.MustCompile(`<script(\s[^>]*)?>[^<]+</script>|<style|\sstyle=|\son[a-z]+=`)
	if m := inline.FindString(page); m != "" {
		t.Errorf("index.html has an inline script, style or event handler: %s", m)
	}
	h := newHandler(t, Config{})
	for _, m := range regexp.MustCompile(`(?:src|href)="([^"#:]+)"`).FindAllStringSubmatch(page, -1) {
		if rec := serve(h, "GET", "/admin/"+m[1], nil); rec.Code != http.StatusOK {
			t.Errorf("index.html links %s: got %d", m[1], rec.Code)
		}
	}
	// Every form control has a label or an accessible name.
	for _, id := range regexp.MustCompile(`<(?:input|select)[^>]*\sid="([^"]+)"`).FindAllStringSubmatch(page, -1) {
		if !strings.Contains(page, `for="`+id[1]+`"`) {
			t.Errorf("control #%s has no <label for>", id[1])
		}
	}
}
