package httpapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzDecodeJSON checks that decodeJSON never panics, refuses with a 400 or
// 413 only, and accepts only bodies encoding/json reads as one object.
func FuzzDecodeJSON(f *testing.F) {
	for _, seed := range []string{`{}`, `{"ids":[1,2]}`, `{"a":1,"a":2}`, `[]`, `{"x":{"y":[{"z":null}]}}`, "{\"a\":\"\xff\"}", `{} {}`, ``} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, body string) {
		req := httptest.NewRequest("POST", "/", strings.NewReader(body))
		var dst struct {
			IDs    []int64 `json:"ids"`
			Name   string  `json:"name"`
			Logout bool    `json:"logout"`
		}
		err := decodeJSON(req, &dst)
		if err == nil {
			trimmed := strings.TrimSpace(body)
			var m map[string]json.RawMessage
			if trimmed != "" && json.Unmarshal([]byte(trimmed), &m) != nil {
				t.Errorf("accepted %q, which is not a JSON object", body)
			}
			return
		}
		var ae *apiError
		if !errors.As(err, &ae) || ae.status != http.StatusBadRequest || ae.msg == "" {
			t.Errorf("body %q: got %v, want a 400 with a message", body, err)
		}
	})
}
