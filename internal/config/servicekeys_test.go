package config

import (
	"crypto/sha256"
	"encoding/hex"
	"reflect"
	"strings"
	"testing"
)

// testServiceKey is a raw service key; error messages must never contain it.
const testServiceKey = "gw-raw-key-0123456789abcdef"

func hexHash(key string) string {
	h := sha256.Sum256([]byte(key))
	return hex.EncodeToString(h[:])
}

func TestServiceKeys(t *testing.T) {
	gw, other := hexHash(testServiceKey), hexHash("another-key")
	tests := []struct {
		name string
		env  string
		want []ServiceKey
	}{
		{name: "unset", env: "", want: nil},
		{name: "one", env: "gateway:" + gw, want: []ServiceKey{{Name: "gateway", SHA256: sha256.Sum256([]byte(testServiceKey))}}},
		{name: "two with spaces and empty entries", env: " ws-1.eu : " + strings.ToUpper(gw) + " ,, ws_2:" + other + ",",
			want: []ServiceKey{
				{Name: "ws-1.eu", SHA256: sha256.Sum256([]byte(testServiceKey))},
				{Name: "ws_2", SHA256: sha256.Sum256([]byte("another-key"))},
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load(envFunc(map[string]string{EnvServiceKeys: tt.env}, ""))
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if !reflect.DeepEqual(c.ServiceKeys, tt.want) {
				t.Errorf("ServiceKeys: got %+v, want %+v", c.ServiceKeys, tt.want)
			}
		})
	}
}

func TestServiceKeysInvalid(t *testing.T) {
	gw := hexHash(testServiceKey)
	tests := []struct {
		name, env, want string
	}{
		{name: "raw key without name", env: testServiceKey, want: "an entry has no ':'"},
		{name: "raw key instead of hash", env: "gateway:" + testServiceKey, want: "service gateway: the key must be given as its SHA-256"},
		{name: "short hash", env: "gateway:" + gw[:62], want: "64 hex digits"},
		{name: "empty name", env: ":" + gw, want: `service name ""`},
		{name: "bad name", env: "gate way:" + gw, want: `service name "gate way"`},
		{name: "long name", env: strings.Repeat("n", 65) + ":" + gw, want: "1 to 64 ASCII"},
		{name: "duplicate name", env: "gw:" + gw + ",gw:" + hexHash("x"), want: "service name gw appears twice"},
		{name: "shared key", env: "a:" + gw + ",b:" + gw, want: "service b has the same key as another service"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(envFunc(map[string]string{EnvServiceKeys: tt.env}, ""))
			errs := Errors(err)
			if len(errs) != 1 {
				t.Fatalf("got %d problems (%v), want 1", len(errs), err)
			}
			if errs[0].Var != EnvServiceKeys || !strings.Contains(errs[0].Message, tt.want) {
				t.Errorf("got %s, want %s: ...%s...", errs[0], EnvServiceKeys, tt.want)
			}
			if strings.Contains(err.Error(), testServiceKey) {
				t.Errorf("message %q contains the raw key", err)
			}
		})
	}
}
