package auth

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

func bcryptOf(t testing.TB, pw string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

// argon2Of writes the PHC string of pw with small parameters.
func argon2Of(pw string) string {
	salt := make([]byte, 16)
	rand.Read(salt)
	key := argon2.IDKey([]byte(pw), salt, 1, 64, 1, 32)
	return fmt.Sprintf("$argon2id$v=19$m=64,t=1,p=1$%s$%s",
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key))
}

func TestUsersVerify(t *testing.T) {
	file := strings.Join([]string{
		"# partners",
		"",
		"partner1:" + bcryptOf(t, "s3cret one"),
		"  partner2:" + argon2Of("second: pw") + "  ",
		"ünïcode:" + bcryptOf(t, "pw"),
	}, "\n")
	u, err := ParseUsers(strings.NewReader(file), "users")
	if err != nil {
		t.Fatal(err)
	}
	if u.Len() != 3 || !u.Has("partner1") || !u.Has("partner2") || u.Has("partner3") {
		t.Fatalf("users = %+v", u.users)
	}
	for _, c := range []struct {
		name, pw string
		want     bool
	}{
		{"partner1", "s3cret one", true},
		{"partner1", "s3cret one ", false},
		{"partner1", "", false},
		{"Partner1", "s3cret one", false}, // names are exact
		{"partner2", "second: pw", true},
		{"partner2", "second: pX", false},
		{"partner2", "s3cret one", false},
		{"ünïcode", "pw", true},
		{"nobody", "s3cret one", false},
		{"", "", false},
		{"partner1", strings.Repeat("x", 5000), false},
	} {
		if got := u.Verify(c.name, c.pw); got != c.want {
			t.Errorf("Verify(%q, %q) = %v, want %v", c.name, c.pw, got, c.want)
		}
	}
}

// bcrypt reads 72 bytes of a password; a longer one must not be accepted
// because its first 72 bytes match.
func TestBcryptRefusesTruncation(t *testing.T) {
	pw := strings.Repeat("a", 72)
	u, err := ParseUsers(strings.NewReader("p:"+bcryptOf(t, pw)), "users")
	if err != nil {
		t.Fatal(err)
	}
	if !u.Verify("p", pw) || u.Verify("p", pw+"extra") {
		t.Error("a password longer than 72 bytes matched its prefix")
	}
}

// The decoy an unknown user is checked against has the cost of the real
// hashes (the timing hides which users exist).
func TestDecoyMatchesCost(t *testing.T) {
	u, err := ParseUsers(strings.NewReader("p:"+bcryptOf(t, "x")), "users")
	if err != nil {
		t.Fatal(err)
	}
	if c, err := bcrypt.Cost(u.decoy.(bcryptHash)); err != nil || c != bcrypt.MinCost {
		t.Errorf("decoy cost %d %v", c, err)
	}
	u, err = ParseUsers(strings.NewReader("p:"+argon2Of("x")), "users")
	if err != nil {
		t.Fatal(err)
	}
	d, real := u.decoy.(*argon2Hash), u.users[0].hash.(*argon2Hash)
	if d.memory != real.memory || d.time != real.time || d.threads != real.threads || len(d.key) != len(real.key) || string(d.salt) == string(real.salt) {
		t.Errorf("decoy %+v for %+v", d, real)
	}
	if d.verify([]byte("x")) {
		t.Error("the decoy matched a password")
	}
}

func TestParseUsersErrors(t *testing.T) {
	good := bcryptOf(t, "x")
	for _, c := range []struct{ file, want string }{
		{"", "users: no users"},
		{"# only a comment\n", "users: no users"},
		{"partner1", `users:1: want "name:hash"`},
		{":" + good, "users:1: empty user name"},
		{"a b:" + good, "white space"},
		{"a\x01:" + good, "control character"},
		{"a:" + good + "\na:" + good, `users:2: user "a" is already defined on line 1`},
		{"a:plaintext", `users:1: user "a": unknown hash`},
		{"a:{SHA}abc", "unknown hash"},
		{"a:$2b$10$short", "bad bcrypt hash"},
		{"a:$2b$99$" + strings.Repeat("a", 53), "bad bcrypt hash"},
		{"a:$argon2i$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA", "use argon2id"},
		{"a:$argon2id$v=16$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA", "version"},
		{"a:$argon2id$v=19$m=64,t=0,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA", "t=0"},
		{"a:$argon2id$v=19$m=99999999,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA", "m=99999999"},
		{"a:$argon2id$v=19$m=64,t=1,p=0$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA", "argon2id p"},
		{"a:$argon2id$v=19$m=64,t=1,p=1,p=2$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA", "parameter"},
		{"a:$argon2id$v=19$m=64,t=1,x=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA", "parameter"},
		{"a:$argon2id$v=19$m=64,t=1,p=1$!!$aGFzaGhhc2hoYXNoaGFzaA", "salt"},
		{"a:$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaA", "hash value"},
		{"a:$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ", "want $argon2id"},
		{strings.Repeat("x", 5000), "users:1: line longer than 4096 bytes"},
	} {
		_, err := ParseUsers(strings.NewReader(c.file), "users")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%.60q: error %v, want it to contain %q", c.file, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "$2b$10$") {
			t.Errorf("error shows a hash: %v", err)
		}
	}
}

func TestLoadUsers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(path, []byte("p:"+bcryptOf(t, "pw")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	u, err := LoadUsers(path)
	if err != nil || !u.Verify("p", "pw") {
		t.Fatalf("LoadUsers: %v", err)
	}
	if _, err := LoadUsers(path + ".missing"); err == nil || !strings.Contains(err.Error(), "smtp.auth_file") {
		t.Errorf("missing file: %v", err)
	}
	// The fixture in testdata is read as an operator would write it.
	u, err = LoadUsers("testdata/users")
	if err != nil {
		t.Fatal(err)
	}
	if !u.Verify("partner1", "correct horse") || !u.Verify("partner2", "battery staple") || u.Verify("partner1", "battery staple") {
		t.Error("testdata/users does not verify its documented passwords")
	}
}

// FuzzParseLine: no line makes the parser panic or accept a hash that
// then panics when verified; whatever is accepted has a valid name.
func FuzzParseLine(f *testing.F) {
	f.Add("partner1:$2b$04$abcdefghijklmnopqrstuuABCDEFGHIJKLMNOPQRSTUVWXYZ01234")
	f.Add("a:" + argon2Of("x"))
	f.Add("a:$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA")
	f.Add("a:$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ=$aGFzaGhhc2hoYXNoaGFzaA==")
	f.Add(":")
	f.Add("a:b:c")
	f.Fuzz(func(t *testing.T, line string) {
		name, h, err := parseLine(line)
		if err != nil {
			return
		}
		if checkName(name) != nil || strings.Contains(name, ":") {
			t.Fatalf("accepted name %q", name)
		}
		if a, ok := h.(*argon2Hash); ok && a.memory > 1<<12 {
			return // valid, but too slow to hash in a fuzz loop
		}
		if b, ok := h.(bcryptHash); ok {
			if c, _ := bcrypt.Cost(b); c > 6 {
				return
			}
		}
		h.verify([]byte("password"))
	})
}
