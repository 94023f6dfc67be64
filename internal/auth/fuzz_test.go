package auth

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// FuzzParseAccess feeds arbitrary strings to ParseAccess. Whatever the input,
// it must not panic, every error must wrap ErrInvalidToken, and anything it
// accepts must be a well-formed access token of a real session.
//
// The clock is fixed at testT0 and the secret is testSecret, so the valid seed
// tokens in testdata/fuzz/FuzzParseAccess (issued that way) stay valid, and
// the fuzzer mutates from tokens that pass the signature check.
func FuzzParseAccess(f *testing.F) {
	tk := newTestTokens(f, newFakeClock(testT0).Now)
	p, err := tk.Issue(testRef)
	if err != nil {
		f.Fatalf("Issue: %v", err)
	}
	h, payload, sig := segments(f, p.Access)
	f.Add(p.Access)
	f.Add(p.Refresh)
	f.Add(h + "." + payload + ".")
	f.Add(h + "." + payload + "." + strings.ToUpper(sig))
	f.Add(h + ".." + sig)
	f.Add("")
	f.Add("..")

	f.Fuzz(func(t *testing.T, token string) {
		c, err := tk.ParseAccess(token)
		if err != nil {
			if !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("ParseAccess(%q): got error %v, want one wrapping ErrInvalidToken", token, err)
			}
			if c != (Claims{}) {
				t.Fatalf("ParseAccess(%q): got claims %+v with an error, want zero Claims", token, c)
			}
			return
		}
		if len(token) > maxTokenLen {
			t.Fatalf("accepted a token of %d bytes, limit %d", len(token), maxTokenLen)
		}
		if c.Type != typeAccess || c.UserID <= 0 || c.SessionID == "" || c.TokenVersion < 0 || c.ID == "" {
			t.Fatalf("ParseAccess(%q): accepted ill-formed claims %+v", token, c)
		}
		if !c.ExpiresAt.Add(leeway).After(testT0) {
			t.Fatalf("ParseAccess(%q): accepted a token that expired at %v (now %v)", token, c.ExpiresAt, testT0)
		}
		if _, err := tk.ParseRefresh(token); !errors.Is(err, errWrongType) {
			t.Fatalf("ParseRefresh of an accepted access token %q: got %v, want errWrongType", token, err)
		}
	})
}

// TestFuzzCorpusSeeds checks that the stored seeds still mean what their
// names say: if the secret, the clock or the claims change, the valid seed
// must be regenerated, or the fuzzer would start from refused tokens only.
func TestFuzzCorpusSeeds(t *testing.T) {
	tk := newTestTokens(t, newFakeClock(testT0).Now)
	tests := []struct {
		file      string
		wantValid bool
	}{
		{"valid_access", true},
		{"valid_refresh", false},
		{"refresh_payload_access_sig", false},
		{"alg_none", false},
		{"signature_flipped", false},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			token := readFuzzSeed(t, filepath.Join("testdata", "fuzz", "FuzzParseAccess", tc.file))
			_, err := tk.ParseAccess(token)
			if tc.wantValid && err != nil {
				t.Errorf("ParseAccess(seed): got %v, want nil", err)
			}
			if !tc.wantValid && !errors.Is(err, ErrInvalidToken) {
				t.Errorf("ParseAccess(seed): got %v, want ErrInvalidToken", err)
			}
		})
	}
}

// readFuzzSeed reads a one-string corpus file in the "go test fuzz v1" format.
func readFuzzSeed(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading seed: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 2 || lines[0] != "go test fuzz v1" {
		t.Fatalf("seed %s: got %d lines starting %q, want the go test fuzz v1 header and one value", path, len(lines), lines[0])
	}
	v, ok := strings.CutPrefix(lines[1], "string(")
	v, ok2 := strings.CutSuffix(v, ")")
	if !ok || !ok2 {
		t.Fatalf("seed %s: got %q, want string(\"...\")", path, lines[1])
	}
	s, err := strconv.Unquote(v)
	if err != nil {
		t.Fatalf("seed %s: unquote %q: %v", path, v, err)
	}
	return s
}
