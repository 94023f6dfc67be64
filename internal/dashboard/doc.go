// Package dashboard is the admin dashboard of presenced: a static page
// (HTML, CSS and JavaScript embedded in the binary with go:embed; no build
// step, no CDN, so it works offline) served at /admin/ by internal/httpapi.
//
// The page is a client of the public HTTP API like any other: it logs in
// with login/ (admins and moderators), lists users with admin/users/, follows
// presence live over the SSE stream admin/events/ (opened with a single-use
// ticket, since EventSource cannot send an Authorization header), heartbeats
// while it is open ({"active": false} while the tab is hidden), rotates its
// refresh token when the access token expires, and logs out with logout/.
// Tokens live in the tab's sessionStorage, never in a cookie or a URL.
package dashboard
