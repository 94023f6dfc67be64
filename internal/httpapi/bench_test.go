package httpapi

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/presenced/presenced/internal/presence"
)

// discardWriter is a ResponseWriter that keeps only the status, reusable
// across iterations, so the benchmark measures the handler, not a recorder.
type discardWriter struct {
	header http.Header
	status int
}

func (w *discardWriter) Header() http.Header         { return w.header }
func (w *discardWriter) WriteHeader(code int)        { w.status = code }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }

// BenchmarkHeartbeat measures POST heartbeat/ through the whole handler
// (middleware, authentication, Touch on miniredis, encoding). Most of the
// time is the miniredis round trip; the allocations are ours and go-redis's.
func BenchmarkHeartbeat(b *testing.B) {
	handler, d := newTestAPI(b)
	hash, err := d.hasher.Hash(testPassword)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := d.store.CreateUser(b.Context(), presence.NewUser{
		Username: "bench", Role: presence.RoleUser, Status: presence.StatusActive, PasswordHash: hash,
	}); err != nil {
		b.Fatal(err)
	}
	rec := httptest.NewRecorder()
	handler.ServeHTTP(rec, httptest.NewRequest("POST", "/api/users/login/",
		strings.NewReader(`{"username":"bench","password":"`+testPassword+`"}`)))
	var login struct {
		Tokens tokenPair `json:"tokens"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &login); err != nil || rec.Code != http.StatusOK {
		b.Fatalf("login: %d %s", rec.Code, rec.Body)
	}
	req := httptest.NewRequest("POST", "/api/users/heartbeat/", nil)
	req.Header.Set("Authorization", "Bearer "+login.Tokens.Access)
	w := &discardWriter{header: http.Header{}}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		clear(w.header)
		w.status = 0
		handler.ServeHTTP(w, req)
		if w.status != http.StatusOK {
			b.Fatalf("status %d", w.status)
		}
	}
}
