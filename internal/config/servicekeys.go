package config

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// ServiceKey is the credential of a trusted service (a websocket gateway
// that heartbeats for its clients): a name for the logs and the SHA-256 of
// its API key. Only the hash is configured, so the configuration (an
// environment dump, a deployment manifest) never holds a usable key.
type ServiceKey struct {
	// Name identifies the service in logs: 1 to 64 ASCII letters, digits
	// and ._-, unique.
	Name string
	// SHA256 is the SHA-256 digest of the key the service presents.
	SHA256 [sha256.Size]byte
}

// maxServiceNameLen bounds a service name; it is only a label.
const maxServiceNameLen = 64

// serviceKeys parses PRESENCE_SERVICE_KEYS: comma-separated name:sha256hex
// entries (make the hash with: printf %s "$KEY" | sha256sum). Names and
// hashes must be unique: two services sharing a key could not be told apart,
// and a repeated name is a copy-paste mistake.
func (l *loader) serviceKeys() []ServiceKey {
	v := l.str(EnvServiceKeys)
	if v == "" {
		return nil
	}
	var out []ServiceKey
	names := map[string]bool{}
	hashes := map[[sha256.Size]byte]bool{}
	for _, item := range strings.Split(v, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, hexHash, found := strings.Cut(item, ":")
		name, hexHash = strings.TrimSpace(name), strings.TrimSpace(hexHash)
		if !found {
			// Without a colon the entry may be a raw key: never echo it.
			l.fail(EnvServiceKeys, "an entry has no ':'; want name:sha256hex entries separated by commas")
			continue
		}
		if !validServiceName(name) {
			l.fail(EnvServiceKeys, "service name %q: want 1 to %d ASCII letters, digits, '.', '_' or '-'", printable(truncate(name, 80)), maxServiceNameLen)
			continue
		}
		b, err := hex.DecodeString(hexHash)
		if err != nil || len(b) != sha256.Size {
			// The value might be a raw key pasted by mistake: never echo it.
			l.fail(EnvServiceKeys, "service %s: the key must be given as its SHA-256, 64 hex digits (printf %%s \"$KEY\" | sha256sum), not the key itself", name)
			continue
		}
		k := ServiceKey{Name: name}
		copy(k.SHA256[:], b)
		switch {
		case names[name]:
			l.fail(EnvServiceKeys, "service name %s appears twice", name)
			continue
		case hashes[k.SHA256]:
			l.fail(EnvServiceKeys, "service %s has the same key as another service; give each service its own key", name)
			continue
		}
		names[name], hashes[k.SHA256] = true, true
		out = append(out, k)
	}
	return out
}

func validServiceName(name string) bool {
	if name == "" || len(name) > maxServiceNameLen {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// serviceNames lists the names of keys, for the start-up log line.
func serviceNames(keys []ServiceKey) []string {
	names := make([]string, len(keys))
	for i, k := range keys {
		names[i] = k.Name
	}
	return names
}
