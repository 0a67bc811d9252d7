// Package auth holds the SMTP AUTH users of smtp.auth_file (bcrypt or
// argon2id hashes) and verifies their passwords. How far a message's
// origin can be trusted (DKIM, SPF, iprev, Authentication-Results) is
// package mailauth.
//
// Nothing here keeps package-level state: a Users value is made from the
// configuration and passed to the SMTP server.
package auth

import (
	"bufio"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// Limits on what an auth file may ask of us. They guard against a typo
// (m=6553600) turning every AUTH attempt into a denial of service; real
// deployments sit far below them.
const (
	maxNameLen      = 256
	maxArgon2Memory = 1 << 20 // KiB: 1 GiB
	maxArgon2Time   = 64
	maxArgon2Keylen = 1024
	maxArgon2Salt   = 1024
	maxLineLen      = 4096
	// maxPasswordLen is the longest password Verify hashes at all; a
	// longer one fails (after the same work as any failure).
	maxPasswordLen = 1024
)

// hash is one parsed password hash.
type hash interface {
	// verify reports whether password matches; it runs in time that does
	// not depend on where password and hash first differ.
	verify(password []byte) bool
	// decoy returns a hash of the same kind and cost that no password
	// matches, to verify unknown users against.
	decoy() (hash, error)
}

type bcryptHash []byte

func (h bcryptHash) verify(pw []byte) bool {
	// bcrypt looks at 72 bytes at most; refuse longer passwords instead
	// of silently truncating them (after doing the same work).
	err := bcrypt.CompareHashAndPassword(h, pw)
	return err == nil && len(pw) <= 72
}

func (h bcryptHash) decoy() (hash, error) {
	cost, err := bcrypt.Cost(h)
	if err != nil {
		return nil, err
	}
	d, err := bcrypt.GenerateFromPassword([]byte(rand.Text()), cost)
	return bcryptHash(d), err
}

type argon2Hash struct {
	time, memory uint32
	threads      uint8
	salt, key    []byte
}

func (h *argon2Hash) verify(pw []byte) bool {
	got := argon2.IDKey(pw, h.salt, h.time, h.memory, h.threads, uint32(len(h.key)))
	return subtle.ConstantTimeCompare(got, h.key) == 1
}

func (h *argon2Hash) decoy() (hash, error) {
	d := *h
	d.salt = make([]byte, len(h.salt))
	d.key = make([]byte, len(h.key))
	rand.Read(d.salt)
	rand.Read(d.key)
	return &d, nil
}

// parseHash reads a bcrypt hash ($2a$, $2b$, $2y$) or an argon2id hash in
// the PHC string format:
//
//	$argon2id$v=19$m=65536,t=3,p=4$<salt, base64>$<hash, base64>
func parseHash(s string) (hash, error) {
	switch {
	case strings.HasPrefix(s, "$2a$"), strings.HasPrefix(s, "$2b$"), strings.HasPrefix(s, "$2y$"):
		if _, err := bcrypt.Cost([]byte(s)); err != nil {
			return nil, fmt.Errorf("bad bcrypt hash: %w", err)
		}
		if len(s) != 60 {
			return nil, errors.New("bad bcrypt hash: want 60 characters")
		}
		return bcryptHash(s), nil
	case strings.HasPrefix(s, "$argon2id$"):
		return parseArgon2id(s)
	case strings.HasPrefix(s, "$argon2i$"), strings.HasPrefix(s, "$argon2d$"):
		return nil, errors.New("argon2i and argon2d are not supported: use argon2id")
	}
	return nil, errors.New("unknown hash: want bcrypt ($2b$...) or argon2id ($argon2id$...)")
}

func parseArgon2id(s string) (hash, error) {
	f := strings.Split(s, "$")
	// "", "argon2id", "v=19", "m=..,t=..,p=..", salt, key
	if len(f) != 6 {
		return nil, errors.New("bad argon2id hash: want $argon2id$v=19$m=M,t=T,p=P$SALT$HASH")
	}
	if f[2] != "v=19" {
		return nil, fmt.Errorf("bad argon2id hash: version %q, want v=19", f[2])
	}
	h := &argon2Hash{}
	seen := map[string]bool{}
	for _, kv := range strings.Split(f[3], ",") {
		k, v, _ := strings.Cut(kv, "=")
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil || seen[k] {
			return nil, fmt.Errorf("bad argon2id parameter %q", kv)
		}
		seen[k] = true
		switch k {
		case "m":
			h.memory = uint32(n)
		case "t":
			h.time = uint32(n)
		case "p":
			if n > 255 {
				return nil, fmt.Errorf("bad argon2id parameter %q", kv)
			}
			h.threads = uint8(n)
		default:
			return nil, fmt.Errorf("bad argon2id parameter %q", kv)
		}
	}
	switch {
	case h.time < 1 || h.time > maxArgon2Time:
		return nil, fmt.Errorf("argon2id t=%d: want 1 to %d", h.time, maxArgon2Time)
	case h.threads < 1:
		return nil, errors.New("argon2id p: want 1 to 255")
	case h.memory < 8*uint32(h.threads) || h.memory > maxArgon2Memory:
		return nil, fmt.Errorf("argon2id m=%d: want 8*p to %d KiB", h.memory, maxArgon2Memory)
	}
	var err error
	if h.salt, err = b64(f[4]); err != nil || len(h.salt) < 8 || len(h.salt) > maxArgon2Salt {
		return nil, errors.New("bad argon2id salt: want 8 or more bytes, base64")
	}
	if h.key, err = b64(f[5]); err != nil || len(h.key) < 16 || len(h.key) > maxArgon2Keylen {
		return nil, errors.New("bad argon2id hash value: want 16 or more bytes, base64")
	}
	return h, nil
}

// b64 decodes the unpadded standard base64 of PHC strings, and the padded
// form some tools write.
func b64(s string) ([]byte, error) {
	return base64.RawStdEncoding.DecodeString(strings.TrimRight(s, "="))
}

type user struct {
	name string
	sum  [sha256.Size]byte // of the name, so that compares take equal time
	hash hash
}

// Users are the SMTP AUTH credentials of smtp.auth_file. They are safe for
// concurrent use.
type Users struct {
	users []user
	decoy hash
	// slots bounds concurrent hash computations: each argon2id check can
	// take tens of MiB and each bcrypt check a CPU for a while, and
	// max_connections clients may all try at once.
	slots chan struct{}
}

// LoadUsers reads an auth file (see ParseUsers).
func LoadUsers(path string) (*Users, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading smtp.auth_file: %w", err)
	}
	defer f.Close()
	return ParseUsers(f, path)
}

// ParseUsers reads "name:hash" lines. Blank lines and lines starting with
// "#" are ignored; surrounding white space is trimmed. A name is 1 to 256
// printable characters without white space or ":"; it may appear once.
// Errors name the file and the line, never the hash.
func ParseUsers(r io.Reader, file string) (*Users, error) {
	u := &Users{slots: make(chan struct{}, max(runtime.NumCPU(), 1))}
	seen := map[string]int{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 512), maxLineLen)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		name, h, err := parseLine(line)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", file, n, err)
		}
		if prev, ok := seen[name]; ok {
			return nil, fmt.Errorf("%s:%d: user %q is already defined on line %d", file, n, name, prev)
		}
		seen[name] = n
		u.users = append(u.users, user{name: name, sum: sha256.Sum256([]byte(name)), hash: h})
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("%s:%d: line longer than %d bytes", file, n+1, maxLineLen)
		}
		return nil, fmt.Errorf("reading %s: %w", file, err)
	}
	if len(u.users) == 0 {
		return nil, fmt.Errorf("%s: no users", file)
	}
	d, err := u.users[0].hash.decoy()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	u.decoy = d
	return u, nil
}

// parseLine parses one trimmed, non-comment "name:hash" line.
func parseLine(line string) (string, hash, error) {
	name, h, ok := strings.Cut(line, ":")
	if !ok {
		return "", nil, errors.New(`want "name:hash"`)
	}
	if err := checkName(name); err != nil {
		return "", nil, err
	}
	parsed, err := parseHash(h)
	if err != nil {
		return "", nil, fmt.Errorf("user %q: %w", name, err)
	}
	return name, parsed, nil
}

func checkName(name string) error {
	if name == "" {
		return errors.New("empty user name")
	}
	if len(name) > maxNameLen || !utf8.ValidString(name) {
		return fmt.Errorf("user name must be valid UTF-8 of at most %d bytes", maxNameLen)
	}
	for _, c := range name {
		if unicode.IsSpace(c) || !unicode.IsPrint(c) {
			return fmt.Errorf("user name %q has white space or a control character", name)
		}
	}
	return nil
}

// Has reports whether name is a user.
func (u *Users) Has(name string) bool {
	for i := range u.users {
		if u.users[i].name == name {
			return true
		}
	}
	return false
}

// Len is the number of users.
func (u *Users) Len() int { return len(u.users) }

// Verify reports whether password is name's. The name is looked up by
// comparing its hash with every user's in constant time, and an unknown
// name is checked against a decoy hash of the same kind and cost, so the
// time taken does not tell which users exist.
func (u *Users) Verify(name, password string) bool {
	sum := sha256.Sum256([]byte(name))
	found := -1
	for i := range u.users {
		eq := subtle.ConstantTimeCompare(sum[:], u.users[i].sum[:])
		found = subtle.ConstantTimeSelect(eq, i, found)
	}
	h := u.decoy
	if found >= 0 {
		h = u.users[found].hash
	}
	pw := []byte(password)
	tooLong := len(pw) > maxPasswordLen
	if tooLong {
		pw = pw[:maxPasswordLen]
	}
	u.slots <- struct{}{}
	ok := h.verify(pw)
	<-u.slots
	return ok && found >= 0 && !tooLong
}
