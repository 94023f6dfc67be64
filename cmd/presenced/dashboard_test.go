package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/presenced/presenced/internal/redistest"
)

// requireBrowserEnv makes a missing Chromium a failure instead of a skip
// (`make test` and CI set it).
const requireBrowserEnv = "PRESENCE_REQUIRE_BROWSER"

// updateScreenshotEnv, set to 1, makes the browser test rewrite the README
// screenshot (internal/dashboard/testdata/dashboard.png).
const updateScreenshotEnv = "PRESENCE_UPDATE_SCREENSHOT"

// findChromium returns the path of a Chromium or Chrome binary, or skips
// the test (fails under PRESENCE_REQUIRE_BROWSER=1) when there is none.
func findChromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	msg := "no chromium on PATH: install it (apt-get install chromium, or scripts/test-deps.sh) to run the dashboard browser test"
	if os.Getenv(requireBrowserEnv) == "1" {
		t.Fatalf("%s (%s=1 makes this a failure)", msg, requireBrowserEnv)
	}
	t.Skip(msg)
	return ""
}

// browser starts a headless Chromium with a fresh profile and returns a
// context for one tab of it.
func browser(t *testing.T, path string) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-background-timer-throttling", true),
		chromedp.Flag("disable-renderer-backgrounding", true),
		chromedp.Flag("force-color-profile", "srgb"),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 860),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil { // start the browser now
		t.Fatalf("start %s: %v", path, err)
	}
	// The page's console errors and exceptions go to the test log: they
	// explain a failure, and a clean run has none.
	var mu sync.Mutex
	var console []string
	go func() {
		for m, err := range chromedp.Console(ctx) {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleException || m.Type == "error" {
				mu.Lock()
				console = append(console, string(m.Type)+": "+m.Text)
				mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, line := range console {
			t.Logf("page console %s", line)
		}
	})
	return ctx
}

// apiUser is a user of the API with tokens that it rotates when the access
// token expires (the test runs with short-lived access tokens). It is safe
// for the heartbeat goroutines.
type apiUser struct {
	base, name, password string
	mu                   sync.Mutex
	access, refresh      string
}

// call sends a request as u, refreshing the tokens once on a 401.
func (u *apiUser) call(method, path string, body any) (int, map[string]any, error) {
	for attempt := 0; ; attempt++ {
		u.mu.Lock()
		token := u.access
		u.mu.Unlock()
		code, out, err := send(u.base, method, path, token, body)
		if err != nil || code != http.StatusUnauthorized || attempt > 0 || token == "" {
			return code, out, err
		}
		u.mu.Lock()
		code, tok, err := send(u.base, "POST", "/api/users/refresh/", "", map[string]string{"refresh": u.refresh})
		if err == nil && code == http.StatusOK {
			u.access, u.refresh = tok["access"].(string), tok["refresh"].(string)
		}
		u.mu.Unlock()
		if err != nil || code != http.StatusOK {
			return http.StatusUnauthorized, nil, err
		}
	}
}

// login starts a new session of u.
func (u *apiUser) login() error {
	code, out, err := send(u.base, "POST", "/api/users/login/", "", map[string]string{"username": u.name, "password": u.password})
	if err != nil {
		return err
	}
	if code != http.StatusOK {
		return fmt.Errorf("login %s: %d %v", u.name, code, out)
	}
	tok := out["tokens"].(map[string]any)
	u.mu.Lock()
	u.access, u.refresh = tok["access"].(string), tok["refresh"].(string)
	u.mu.Unlock()
	return nil
}

func send(base, method, path, token string, body any) (int, map[string]any, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, err
	}
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return resp.StatusCode, out, nil
}

// heartbeater heartbeats as a user in the background, active or idle, until
// stopped.
type heartbeater struct {
	mu     sync.Mutex
	active bool
	stop   chan struct{}
	done   chan struct{}
}

func startHeartbeats(u *apiUser, every time.Duration, active bool) *heartbeater {
	hb := &heartbeater{active: active, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(hb.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			hb.mu.Lock()
			active := hb.active
			hb.mu.Unlock()
			_, _, _ = u.call("POST", "/api/users/heartbeat/", map[string]bool{"active": active})
			select {
			case <-hb.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return hb
}

func (hb *heartbeater) setActive(active bool) {
	hb.mu.Lock()
	hb.active = active
	hb.mu.Unlock()
}

func (hb *heartbeater) halt() {
	select {
	case <-hb.stop:
	default:
		close(hb.stop)
	}
	<-hb.done
}

// page drives the dashboard in one tab.
type page struct {
	t   *testing.T
	ctx context.Context
}

func (p *page) do(actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 15*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		p.t.Fatalf("browser: %v", err)
	}
}

func eval[T any](p *page, js string) T {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
	if err != nil {
		p.t.Fatalf("evaluate %s: %v", js, err)
	}
	return v
}

// waitFor polls a JavaScript condition until it is true or timeout passes.
func (p *page) waitFor(js string, timeout time.Duration) bool {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if eval[bool](p, js) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// recordStatusChanges makes the page log, with the page's clock, every
// status a row takes on: the test reads when the screen changed.
const recordStatusChanges = `(() => {
  window.__log = [];
  const last = {};
  const tbody = document.querySelector('#users tbody');
  const record = () => {
    for (const tr of tbody.rows) {
      const u = tr.dataset.username, s = tr.dataset.status;
      if (last[u] !== s) { last[u] = s; window.__log.push({u, s, t: Date.now()}); }
    }
  };
  record();
  new MutationObserver(record).observe(tbody, {subtree: true, childList: true, attributes: true, attributeFilter: ['data-status']});
  return true;
})()`

// shownAt returns when (Unix ms, page clock) the row of user first showed
// status at or after since, waiting up to timeout; 0 when it did not.
func (p *page) shownAt(user, status string, since time.Time, timeout time.Duration) int64 {
	p.t.Helper()
	js := fmt.Sprintf(`(window.__log.find(e => e.u === %q && e.s === %q && e.t >= %d) || {t: 0}).t`, user, status, since.UnixMilli())
	deadline := time.Now().Add(timeout)
	for {
		if at := eval[int64](p, js); at != 0 {
			return at
		}
		if time.Now().After(deadline) {
			return 0
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// latency measures one change: act changes user's status through the API;
// the row must show status within a second of act returning. It returns
// the time from act returning to the DOM showing it (0 when the screen was
// faster than the API's answer), and from act starting.
func (p *page) latency(user, status string, act func()) (afterReturn, afterStart time.Duration) {
	p.t.Helper()
	start := time.Now()
	act()
	returned := time.Now()
	at := p.shownAt(user, status, start.Add(-time.Millisecond), time.Second)
	if at == 0 {
		row := eval[string](p, fmt.Sprintf(`(document.querySelector('tr[data-username=%q]') || {}).dataset?.status || 'missing'`, user))
		p.t.Fatalf("%s did not show %s within 1s of the API call returning (row: %s)", user, status, row)
	}
	shown := time.UnixMilli(at)
	return max(0, shown.Sub(returned)), shown.Sub(start)
}

// TestDashboardInBrowser drives the real dashboard in headless Chromium
// against the real service on a real redis-server: log in as admin, watch
// users go online, away (by inactivity and by hand) and offline without a
// reload, force a logout from the row, and log out.
func TestDashboardInBrowser(t *testing.T) {
	chromium := findChromium(t)
	if testing.Short() && os.Getenv(requireBrowserEnv) != "1" {
		t.Skip("-short: the browser test takes about 15 s")
	}
	srv := redistest.Start(t)
	env := baseEnv(srv)
	env["PRESENCE_TTL"] = "6s"               // the page heartbeats every 2 s
	env["PRESENCE_AWAY_AFTER"] = "2s"        // idle heartbeats make a user away quickly
	env["PRESENCE_ACCESS_TOKEN_TTL"] = "1s"  // the page must rotate its tokens during the test
	env["PRESENCE_SSE_PING_INTERVAL"] = "2s" // and its stream re-checks its session
	s := startService(t, env)

	admin := &apiUser{base: s.base, name: "root", password: "rootpass1"}
	if err := admin.login(); err != nil {
		t.Fatal(err)
	}
	users := map[string]*apiUser{}
	for _, u := range []struct{ name, role, status string }{
		{"alice", "user", "active"}, {"bob", "user", "active"}, {"carol", "moderator", "active"},
		{"dave", "user", "active"}, {"erin", "user", "suspended"}, {"frank", "user", "active"},
	} {
		code, out, err := admin.call("POST", "/api/users/admin/users/", map[string]any{
			"username": u.name, "password": u.name + "-password", "role": u.role, "status": u.status,
			"email": u.name + "@example.com", "first_name": strings.ToUpper(u.name[:1]) + u.name[1:],
		})
		if err != nil || code != http.StatusCreated {
			t.Fatalf("create %s: %d %v %v", u.name, code, out, err)
		}
		users[u.name] = &apiUser{base: s.base, name: u.name, password: u.name + "-password"}
	}
	// Some company for the screenshot: carol online, bob away, frank seen
	// and gone.
	for _, name := range []string{"bob", "carol", "frank"} {
		if err := users[name].login(); err != nil {
			t.Fatal(err)
		}
	}
	carolHB := startHeartbeats(users["carol"], 500*time.Millisecond, true)
	defer carolHB.halt()
	bobHB := startHeartbeats(users["bob"], 500*time.Millisecond, true)
	defer bobHB.halt()
	if code, out, err := users["bob"].call("POST", "/api/users/me/status/", map[string]string{"status": "away"}); err != nil || code != http.StatusOK {
		t.Fatalf("bob away: %d %v %v", code, out, err)
	}
	if code, _, err := users["frank"].call("POST", "/api/users/logout/", nil); err != nil || code != http.StatusOK {
		t.Fatalf("frank logout: %d %v", code, err)
	}

	p := &page{t: t, ctx: browser(t, chromium)}
	p.do(chromedp.Navigate(s.base + "/admin"))
	p.do(chromedp.WaitVisible(chromedp.ID("login-form")))

	// A user who is not staff is told so, and gets no dashboard.
	p.do(
		chromedp.SendKeys(chromedp.ID("username"), "dave"),
		chromedp.SendKeys(chromedp.ID("password"), "dave-password"),
		chromedp.Click(chromedp.ID("login-submit")),
	)
	if !p.waitFor(`document.getElementById('login-message').textContent.includes('for admins and moderators')`, 5*time.Second) {
		t.Fatalf("non-staff login: message %q", eval[string](p, `document.getElementById('login-message').textContent`))
	}
	if eval[bool](p, `!document.getElementById('app-view').hidden || sessionStorage.length > 0 || document.getElementById('password').value !== ''`) {
		t.Fatal("non-staff login opened the dashboard, kept tokens or kept the password in the form")
	}

	// The admin logs in; the stream is live and the list loaded.
	eval[bool](p, `(document.getElementById('username').value = '') === ''`)
	p.do(
		chromedp.SendKeys(chromedp.ID("username"), "root"),
		chromedp.SendKeys(chromedp.ID("password"), "rootpass1"),
	)
	p.do(chromedp.Click(chromedp.ID("login-submit")))
	pageLogin := time.Now()
	if !p.waitFor(`document.getElementById('conn').dataset.state === 'live' && !!document.querySelector('tr[data-username="alice"]')`, 10*time.Second) {
		t.Fatalf("dashboard not live with the user list 10s after login: conn %q, list %q, login message %q",
			eval[string](p, `document.getElementById('conn').textContent`), eval[string](p, `document.getElementById('list-status').textContent`),
			eval[string](p, `document.getElementById('login-message').textContent`))
	}
	firstRefresh := eval[string](p, `JSON.parse(sessionStorage.getItem('presenced.dashboard')).refresh`)
	eval[bool](p, recordStatusChanges)
	for name, want := range map[string]string{"alice": "offline", "bob": "away", "carol": "online", "frank": "offline", "root": "online"} {
		if got := eval[string](p, fmt.Sprintf(`document.querySelector('tr[data-username=%q]').dataset.status`, name)); got != want {
			t.Errorf("initial row %s: got %s, want %s", name, got, want)
		}
	}
	if got := eval[string](p, `document.getElementById('count-total').textContent`); got != "7" {
		t.Errorf("total counter: got %s, want 7", got)
	}

	alice := users["alice"]
	var measured []string
	report := func(what string, afterReturn, afterStart time.Duration) {
		measured = append(measured, fmt.Sprintf("%s %v (%v from the call's start)", what, afterReturn.Round(time.Millisecond), afterStart.Round(time.Millisecond)))
	}

	// alice logs in through the API: her row turns online and moves up.
	r, st := p.latency("alice", "online", func() {
		if err := alice.login(); err != nil {
			t.Fatal(err)
		}
	})
	report("login→online", r, st)
	if got := eval[int](p, `[...document.querySelectorAll('#users tbody tr')].findIndex(tr => tr.dataset.username === 'alice')`); got > 2 {
		t.Errorf("alice's row is at position %d after going online, want among the online rows at the top", got)
	}
	aliceHB := startHeartbeats(alice, 300*time.Millisecond, true)
	defer func() { aliceHB.halt() }() // the one running when the test ends

	// Away by hand, then back.
	r, st = p.latency("alice", "away", func() {
		if code, _, err := alice.call("POST", "/api/users/me/status/", map[string]string{"status": "away"}); err != nil || code != http.StatusOK {
			t.Fatalf("alice away: %d %v", code, err)
		}
	})
	report("manual away", r, st)
	p.latency("alice", "online", func() {
		if code, _, err := alice.call("POST", "/api/users/me/status/", map[string]string{"status": "online"}); err != nil || code != http.StatusOK {
			t.Fatalf("alice online: %d %v", code, err)
		}
	})

	// Away by inactivity: her client keeps heartbeating, but reports no
	// activity; after PRESENCE_AWAY_AFTER the sweeper makes her away.
	idleFrom := time.Now()
	aliceHB.setActive(false)
	if p.shownAt("alice", "away", idleFrom, 10*time.Second) == 0 {
		t.Fatal("alice not shown away 10s into idle heartbeats (away after 2s)")
	}
	aliceHB.setActive(true)
	if p.shownAt("alice", "online", idleFrom, 5*time.Second) == 0 {
		t.Fatal("alice not back online after an active heartbeat")
	}

	// The screenshot, with the page in a steady state (the changed row's
	// highlight fades in 1.2 s).
	time.Sleep(1300 * time.Millisecond)
	shot := p.screenshot()
	saveArtifact(t, "dashboard.png", shot)
	if os.Getenv(updateScreenshotEnv) == "1" {
		if err := os.WriteFile(filepath.Join(moduleRoot(t), "internal", "dashboard", "testdata", "dashboard.png"), shot, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// Logout through the API: offline.
	aliceHB.halt()
	r, st = p.latency("alice", "offline", func() {
		if code, _, err := alice.call("POST", "/api/users/logout/", nil); err != nil || code != http.StatusOK {
			t.Fatalf("alice logout: %d %v", code, err)
		}
	})
	report("logout→offline", r, st)

	// Force-logout from the row: the button asks for confirmation, then
	// ends every session of the user.
	if err := alice.login(); err != nil {
		t.Fatal(err)
	}
	// She keeps heartbeating, active, until the force-logout: otherwise the
	// idle scan makes her away 2 s into the wait below (PRESENCE_AWAY_AFTER),
	// and her row moves to the away group under the click (CI failed on it:
	// "Could not find node with given id").
	aliceHB = startHeartbeats(alice, 300*time.Millisecond, true)
	if p.shownAt("alice", "online", time.Now().Add(-time.Second), 2*time.Second) == 0 {
		t.Fatal("alice not online again")
	}
	// Wait until the page's first access token has expired (1 s, plus
	// the 5 s leeway tokens get for clock skew): the action below works
	// only if the page rotated its tokens.
	time.Sleep(time.Until(pageLogin.Add(6*time.Second + 500*time.Millisecond)))
	clickedAt := time.Now()
	p.do(chromedp.Click(chromedp.CSS(`tr[data-username="alice"] button[data-action="force-logout"]`)))
	if got := eval[string](p, `document.querySelector('tr[data-username="alice"] button[data-action="force-logout"]').textContent`); got != "Confirm log out" {
		t.Errorf("force-logout button after one click: got %q, want a confirmation", got)
	}
	p.do(chromedp.Click(chromedp.CSS(`tr[data-username="alice"] button[data-action="force-logout"]`)))
	if p.shownAt("alice", "offline", clickedAt, 3*time.Second) == 0 {
		t.Fatal("alice not offline 3s after the force-logout click")
	}
	aliceHB.halt() // its heartbeats after the force-logout got 401
	if code, _, _ := send(s.base, "POST", "/api/users/heartbeat/", alice.access, nil); code != http.StatusUnauthorized {
		t.Errorf("alice's token after force-logout: heartbeat got %d, want 401", code)
	}
	if !p.waitFor(`document.getElementById('toast').textContent.includes('logged out from all devices')`, 2*time.Second) {
		t.Errorf("no confirmation toast after force-logout: %q", eval[string](p, `document.getElementById('toast').textContent`))
	}
	if got := eval[string](p, `JSON.parse(sessionStorage.getItem('presenced.dashboard')).refresh`); got == firstRefresh {
		t.Error("the page never rotated its refresh token, yet its access token expired")
	}

	// The details drawer lists the sessions; Escape closes it and gives the
	// focus back.
	p.do(chromedp.Click(chromedp.CSS(`tr[data-username="carol"] button[data-action="details"]`)))
	if !p.waitFor(`!document.getElementById('drawer').hidden && document.querySelectorAll('#drawer-body .sessions-table tbody tr').length === 1`, 3*time.Second) {
		t.Fatalf("drawer: %q", eval[string](p, `document.getElementById('drawer-body').textContent`))
	}
	if got := eval[string](p, `document.activeElement.id`); got != "drawer-close" {
		t.Errorf("focus in the open drawer: got #%s, want #drawer-close", got)
	}
	saveArtifact(t, "dashboard-drawer.png", p.screenshot())
	p.do(chromedp.KeyEvent("\x1b"))
	if !p.waitFor(`document.getElementById('drawer').hidden && document.activeElement.dataset.action === 'details'`, 2*time.Second) {
		t.Error("Escape did not close the drawer and return the focus to its button")
	}

	// Phone width: still usable (the rows become cards).
	p.do(chromedp.EmulateViewport(390, 844))
	if eval[bool](p, `document.documentElement.scrollWidth > window.innerWidth + 1`) {
		t.Error("the page scrolls sideways at 390 px")
	}
	saveArtifact(t, "dashboard-phone.png", p.screenshot())
	p.do(chromedp.EmulateViewport(1280, 860))

	// Logging out ends the page's session and forgets its tokens.
	p.do(chromedp.Click(chromedp.ID("logout")))
	if !p.waitFor(`!document.getElementById('login-view').hidden && sessionStorage.getItem('presenced.dashboard') === null`, 3*time.Second) {
		t.Fatal("logout did not return to the login form with the tokens cleared")
	}
	code, online, err := admin.call("GET", "/api/users/admin/users/online/", nil)
	if err != nil || code != http.StatusOK {
		t.Fatalf("online users: %d %v", code, err)
	}
	for _, u := range online["online_users"].([]any) {
		if u.(map[string]any)["username"] == "root" && u.(map[string]any)["live_sessions"].(float64) > 1 {
			t.Errorf("root still has the page's session after logout: %v", u)
		}
	}

	t.Logf("change-to-screen latency (API call returned → DOM shows it): %s", strings.Join(measured, "; "))
}

// screenshot captures the viewport as PNG.
func (p *page) screenshot() []byte {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
	defer cancel()
	shot, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		p.t.Fatalf("screenshot: %v", err)
	}
	return shot
}

// saveArtifact writes a test output under artifacts/ at the module root
// (gitignored).
func saveArtifact(t *testing.T, name string, b []byte) {
	t.Helper()
	dir := filepath.Join(moduleRoot(t), "artifacts")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("saved %s", filepath.Join("artifacts", name))
}

// moduleRoot is the directory of go.mod.
func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		} else if !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test's directory")
		}
		dir = parent
	}
}
