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

func TestCheckJSON(t *testing.T) {
	for _, tc := range []struct {
		body string
		ok   bool
	}{
		{`{}`, true},
		{`{"a":{}}`, true},
		{`{"a":[{}, {"b":1}], "c":{"d":[]}}`, true},
		{`{"a":"}","b":"{"}`, true},
		{`{"a":{"b":1},"b":2}`, true}, // the same name in different objects
		{`{"a":["a","a"]}`, true},     // strings in arrays are not names
		{`{"a":{"x":1},"c":{"x":2}}`, true},
		{`{}  ` + "\n", true},
		{`{"a":1,"a":1}`, false},
		{`{"a":{},"a":{}}`, false},
		{`{"a":{"b":[],"b":[]}}`, false},
		{`{"Ids":1,"iDs":2}`, false},
		{`{}{}`, false},
		{`{}]`, false},
		{`{"a":1,}`, false},
		{`{"a" 1}`, false},
	} {
		err := checkJSON([]byte(tc.body))
		if (err == nil) != tc.ok {
			t.Errorf("checkJSON(%s): got %v, want ok %v", tc.body, err, tc.ok)
		}
	}
}

func TestTruncateUTF8(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"abc", 5, "abc"},
		{"abcdef", 3, "abc"},
		{"aé", 2, "a"}, // é is two bytes: not cut in half
		{"aé", 3, "aé"},
		{"a\xffb", 8, "a\uFFFDb"},
		{"日本語", 4, "日"},
	} {
		if got := truncateUTF8(tc.in, tc.n); got != tc.want {
			t.Errorf("truncateUTF8(%q, %d): got %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}
