package dashboard

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"
)

//go:embed static
var static embed.FS

// Config configures the dashboard.
type Config struct {
	// SessionTTL is the presence TTL of a session (PRESENCE_TTL): the page
	// heartbeats every third of it. Default 120s.
	SessionTTL time.Duration
	// Prefix is the path the dashboard is served under. Default "/admin/".
	Prefix string
}

// contentSecurityPolicy allows the page's own files and API calls only: no
// inline script, no third-party origin, no framing, no form posts (the login
// form is submitted by script, so a password can never end up in a URL).
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"

// heartbeatPlaceholder is replaced in index.html by the heartbeat interval
// in milliseconds.
const heartbeatPlaceholder = "{{HEARTBEAT_MS}}"

// file is one embedded file, ready to serve.
type file struct {
	body        []byte
	contentType string
	etag        string
	modTime     time.Time
}

// handler serves the embedded files.
type handler struct {
	prefix string
	files  map[string]file // by name relative to prefix; "" is index.html
}

// New returns the dashboard's handler. It answers GET and HEAD of the
// prefix (the page), of the page's files, and redirects the prefix without
// its trailing slash to it; anything else is 404 or 405.
func New(cfg Config) (http.Handler, error) {
	if cfg.SessionTTL < 0 {
		return nil, fmt.Errorf("dashboard: session TTL %v is negative", cfg.SessionTTL)
	}
	if cfg.SessionTTL == 0 {
		cfg.SessionTTL = 120 * time.Second
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "/admin/"
	}
	if !strings.HasPrefix(cfg.Prefix, "/") || !strings.HasSuffix(cfg.Prefix, "/") {
		return nil, fmt.Errorf("dashboard: prefix %q must start and end with /", cfg.Prefix)
	}
	// A third of the TTL leaves two heartbeats' slack before the session
	// would expire; never more often than once a second.
	heartbeat := max(cfg.SessionTTL/3, time.Second)
	h := &handler{prefix: cfg.Prefix, files: map[string]file{}}
	// The build time of the binary is unknown to embed; one fixed time lets
	// clients revalidate with If-Modified-Since as well as with the ETag.
	started := time.Now().UTC().Truncate(time.Second)
	err := fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := static.ReadFile(p)
		if err != nil {
			return err
		}
		name := strings.TrimPrefix(p, "static/")
		if name == "index.html" {
			if !bytes.Contains(body, []byte(heartbeatPlaceholder)) {
				return fmt.Errorf("dashboard: index.html lacks %s", heartbeatPlaceholder)
			}
			body = bytes.ReplaceAll(body, []byte(heartbeatPlaceholder), []byte(strconv.FormatInt(heartbeat.Milliseconds(), 10)))
			name = ""
		}
		ct := mime.TypeByExtension(path.Ext(p))
		if ct == "" {
			ct = "application/octet-stream"
		}
		sum := sha256.Sum256(body)
		h.files[name] = file{body: body, contentType: ct, etag: `"` + hex.EncodeToString(sum[:8]) + `"`, modTime: started}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("dashboard: load embedded files: %w", err)
	}
	return h, nil
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set("Content-Security-Policy", contentSecurityPolicy)
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("X-Frame-Options", "DENY")
	// The page's URL never holds a secret, but the event stream's does (a
	// single-use ticket): no Referer leaves the page.
	hdr.Set("Referrer-Policy", "no-referrer")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hdr.Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if r.URL.Path+"/" == h.prefix {
		http.Redirect(w, r, h.prefix, http.StatusMovedPermanently)
		return
	}
	name, ok := strings.CutPrefix(r.URL.Path, h.prefix)
	f, found := h.files[name]
	if !ok || !found {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	hdr.Set("Content-Type", f.contentType)
	hdr.Set("ETag", f.etag)
	// Always revalidate: a new binary serves new files at the same URLs.
	hdr.Set("Cache-Control", "no-cache")
	http.ServeContent(w, r, name, f.modTime, bytes.NewReader(f.body))
}
