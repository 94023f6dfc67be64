package auth

import (
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"golang.org/x/crypto/bcrypt"
)

func TestHashVerifyRoundTrip(t *testing.T) {
	h := NewHasher(bcrypt.MinCost)
	tests := []struct {
		name     string
		password string
	}{
		{"ascii", "correct horse battery staple"},
		{"minimum length", "12345678"},
		{"unicode", "pässwörd-密码-🔑"},
		{"128 four-byte characters", strings.Repeat("🔑", 128)},
		{"NUL bytes", "pass\x00word\x00"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hash, err := h.Hash(tc.password)
			if err != nil {
				t.Fatalf("Hash: %v", err)
			}
			if strings.Contains(hash, tc.password) {
				t.Fatalf("hash %q contains the password", hash)
			}
			if cost, err := bcrypt.Cost([]byte(hash)); err != nil || cost != bcrypt.MinCost {
				t.Errorf("bcrypt.Cost(hash): got %d, %v, want %d, nil", cost, err, bcrypt.MinCost)
			}
			if !h.Verify(hash, tc.password) {
				t.Errorf("Verify(hash, password): got false, want true")
			}
			if h.Verify(hash, tc.password+"x") {
				t.Errorf("Verify(hash, password+\"x\"): got true, want false")
			}
			if h.Verify(hash, "") {
				t.Errorf("Verify(hash, \"\"): got true, want false")
			}
		})
	}
}

func TestHashIsSalted(t *testing.T) {
	h := NewHasher(bcrypt.MinCost)
	a, err := h.Hash("same password")
	if err != nil {
		t.Fatalf("Hash: %v", err)
	}
	b, err := h.Hash("same password")
	if err != nil {
		t.Fatalf("Hash: %v", err)
	}
	if a == b {
		t.Errorf("two hashes of one password: got both %q, want different salts", a)
	}
}

// TestLongPasswordsAreNotTruncated pairs passwords that share their first 72
// bytes (all bcrypt would read) and differ later: neither may open the
// other's hash.
func TestLongPasswordsAreNotTruncated(t *testing.T) {
	h := NewHasher(bcrypt.MinCost)
	tests := []struct {
		name string
		a, b string
	}{
		{"ascii, differ at character 128", strings.Repeat("a", 127) + "1", strings.Repeat("a", 127) + "2"},
		{"ascii, differ at byte 73", strings.Repeat("a", 72) + "1" + strings.Repeat("z", 55), strings.Repeat("a", 72) + "2" + strings.Repeat("z", 55)},
		{"two-byte characters", strings.Repeat("é", 127) + "è", strings.Repeat("é", 128)},
		{"four-byte characters, 512 bytes", strings.Repeat("😀", 127) + "😃", strings.Repeat("😀", 128)},
		{"mixed scripts", strings.Repeat("密码pässwörd", 11) + "end-α", strings.Repeat("密码pässwörd", 11) + "end-β"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Guard the premise, so the case cannot pass vacuously.
			if len(tc.a) <= 72 || tc.a[:72] != tc.b[:72] || tc.a == tc.b {
				t.Fatalf("bad case: got %d bytes, shared 72-byte prefix %v, want > 72 bytes, shared prefix, different", len(tc.a), tc.a[:72] == tc.b[:72])
			}
			if n := utf8.RuneCountInString(tc.a); n > 128 {
				t.Fatalf("bad case: got %d characters, want at most 128", n)
			}
			hash, err := h.Hash(tc.a)
			if err != nil {
				t.Fatalf("Hash of %d bytes: %v", len(tc.a), err)
			}
			if !h.Verify(hash, tc.a) {
				t.Errorf("Verify(hash(a), a): got false, want true")
			}
			if h.Verify(hash, tc.b) {
				t.Errorf("Verify(hash(a), b) where a and b share 72 bytes: got true, want false")
			}
		})
	}
}

func TestVerifyMalformedHash(t *testing.T) {
	h := NewHasher(bcrypt.MinCost)
	good, err := h.Hash("password123")
	if err != nil {
		t.Fatalf("Hash: %v", err)
	}
	// A bcrypt hash of the password itself, without the pre-hash.
	raw, err := bcrypt.GenerateFromPassword([]byte("password123"), bcrypt.MinCost)
	if err != nil {
		t.Fatalf("bcrypt: %v", err)
	}
	flipped := []byte(good)
	flipped[len(flipped)-5] ^= 1
	tests := []struct {
		name string
		hash string
	}{
		{"empty", ""},
		{"short", "$2a$"},
		{"plain text", "password123"},
		{"sha256 hex", "ef92b778bafe771e89245b89ecbc08a44a4e166c06659911881f383d4473e94f"},
		{"truncated", good[:len(good)-1]},
		{"one bit flipped", string(flipped)},
		{"bad prefix", "x" + good[1:]},
		{"cost out of range", good[:4] + "99" + good[6:]},
		{"cost not a number", good[:4] + "xx" + good[6:]},
		{"version too new", "$9a" + good[3:]},
		{"salt not base64", "$2a$04$" + strings.Repeat("*", 53)},
		{"60 bytes of junk", strings.Repeat("$", 60)},
		{"60 NUL bytes", strings.Repeat("\x00", 60)},
		{"not pre-hashed", string(raw)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if h.Verify(tc.hash, "password123") {
				t.Errorf("Verify(%q, password): got true, want false", tc.hash)
			}
		})
	}
}

func TestNewHasherCost(t *testing.T) {
	tests := []struct {
		name string
		cost int
		want int
	}{
		{"min", bcrypt.MinCost, bcrypt.MinCost},
		{"below min", 1, bcrypt.MinCost},
		{"negative", -3, bcrypt.MinCost},
		{"six", 6, 6},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := NewHasher(tc.cost)
			if h.cost != tc.want {
				t.Errorf("cost: got %d, want %d", h.cost, tc.want)
			}
			// The dummy must cost what a real hash costs, or VerifyNone
			// would be faster than a failed Verify.
			if c, err := bcrypt.Cost(h.dummy); err != nil || c != tc.want {
				t.Errorf("dummy hash cost: got %d, %v, want %d, nil", c, err, tc.want)
			}
		})
	}
}

func TestNewHasherDefaultCost(t *testing.T) {
	if testing.Short() {
		t.Skip("hashes once at bcrypt.DefaultCost")
	}
	h := NewHasher(0)
	if h.cost != bcrypt.DefaultCost {
		t.Errorf("cost: got %d, want bcrypt.DefaultCost %d", h.cost, bcrypt.DefaultCost)
	}
	if c, err := bcrypt.Cost(h.dummy); err != nil || c != bcrypt.DefaultCost {
		t.Errorf("dummy hash cost: got %d, %v, want %d, nil", c, err, bcrypt.DefaultCost)
	}
}

// TestVerifyNoneTakesAsLongAsVerify checks that an unknown-user login is not
// measurably faster than a wrong password. Each bcrypt cost step doubles the
// time, so a dummy hash even one step cheaper would show up as half; the
// threshold of a third leaves room for scheduler noise on a busy machine,
// and the median of several runs drops outliers.
func TestVerifyNoneTakesAsLongAsVerify(t *testing.T) {
	const cost = bcrypt.MinCost + 2 // a few ms a comparison
	const runs = 7
	h := NewHasher(cost)
	hash, err := h.Hash("the real password")
	if err != nil {
		t.Fatalf("Hash: %v", err)
	}
	median := func(f func()) time.Duration {
		d := make([]time.Duration, runs)
		for i := range d {
			start := time.Now()
			f()
			d[i] = time.Since(start)
		}
		slices.Sort(d)
		return d[runs/2]
	}
	verify := median(func() {
		if h.Verify(hash, "a wrong password") {
			t.Fatal("Verify of a wrong password: got true, want false")
		}
	})
	none := median(func() { h.VerifyNone("a wrong password") })
	if none < verify/3 {
		t.Errorf("VerifyNone median %v, Verify median %v: got ratio %.2f, want at least 0.33", none, verify, float64(none)/float64(verify))
	}
}
