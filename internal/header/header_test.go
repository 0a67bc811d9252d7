package header

import (
	"bytes"
	"slices"
	"strings"
	"testing"
)

func TestCut(t *testing.T) {
	for _, c := range []struct {
		in, hdr, body string
		found         bool
	}{
		{"A: 1\nB: 2\n\nbody\n", "A: 1\nB: 2\n", "body\n", true},
		{"A: 1\r\nB: 2\r\n\r\nbody\r\n\r\nmore", "A: 1\r\nB: 2\r\n", "body\r\n\r\nmore", true},
		// The first empty line wins whatever its line ending.
		{"A: 1\n\nbody\r\n\r\nmore", "A: 1\n", "body\r\n\r\nmore", true},
		{"A: 1\r\n\nbody", "A: 1\r\n", "body", true},
		{"\nbody", "", "body", true},
		{"\r\nbody", "", "body", true},
		{"A: 1\nB: 2", "A: 1\nB: 2", "", false},
		{"A: 1\n", "A: 1\n", "", false},
		{"A: 1\n\n", "A: 1\n", "", true},
		{"A: 1\n \nB", "A: 1\n \nB", "", false}, // white space is not empty
		{"", "", "", false},
	} {
		hdr, body, found := Cut([]byte(c.in))
		if string(hdr) != c.hdr || string(body) != c.body || found != c.found {
			t.Errorf("Cut(%q) = %q, %q, %v; want %q, %q, %v", c.in, hdr, body, found, c.hdr, c.body, c.found)
		}
		if found && body == nil {
			t.Errorf("Cut(%q): body nil although found", c.in)
		}
	}
}

func TestNext(t *testing.T) {
	in := "Subject: a\r\n b\r\n\tc\r\nX-Y:\r\nFrom : z\nbad line\nTo: t\n"
	var got []string
	pos := 0
	for {
		f, next, ok := Strict.Next([]byte(in), pos)
		if !ok {
			break
		}
		got = append(got, string(f.Name)+"|"+string(f.Value)+"|"+string(f.Raw))
		pos = next
	}
	want := []string{"Subject| a\r\n b\r\n\tc\r\n|Subject: a\r\n b\r\n\tc\r\n", "X-Y|\r\n|X-Y:\r\n"}
	if !slices.Equal(got, want) {
		t.Fatalf("Strict fields %q, want %q", got, want)
	}
	if in[pos:] != "From : z\nbad line\nTo: t\n" {
		t.Fatalf("Strict stopped at %q", in[pos:])
	}
	f, next, ok := Obsolete.Next([]byte(in), pos)
	if !ok || string(f.Name) != "From" || string(f.Value) != " z\n" || in[next:] != "bad line\nTo: t\n" {
		t.Fatalf("Obsolete.Next = %q %q %d %v", f.Name, f.Value, next, ok)
	}
	if _, n, ok := Obsolete.Next([]byte(in), next); ok || n != next {
		t.Fatalf("a line with no colon is a field (%d)", n)
	}
	for _, s := range []string{" cont: x\n", "\tx: y\n", ": x\n", "\n", "\r\nA: b\n", "A\x01: b\n", "Ä: b\n", ""} {
		if _, _, ok := Obsolete.Next([]byte(s), 0); ok {
			t.Errorf("Next(%q) is a field", s)
		}
	}
	// Lenient: a white-space-only line is not a continuation.
	ws := []byte("A: b\n \t\r\nC: d\n")
	if f, next, ok := Lenient.Next(ws, 0); !ok || string(f.Raw) != "A: b\n" || next != 5 {
		t.Errorf("Lenient: %q %d %v", f.Raw, next, ok)
	}
	if f, _, _ := Obsolete.Next(ws, 0); string(f.Raw) != "A: b\n \t\r\n" {
		t.Errorf("Obsolete: %q", f.Raw)
	}
	if f, _, ok := Lenient.Next([]byte("A : b\n c \n"), 0); !ok || string(f.Name) != "A" || string(f.Value) != " b\n c \n" {
		t.Errorf("Lenient: %q %q", f.Name, f.Value)
	}
	// No final line break.
	if f, next, ok := Strict.Next([]byte("A: b\n c"), 0); !ok || string(f.Raw) != "A: b\n c" || next != 7 {
		t.Errorf("unterminated field: %q %d %v", f.Raw, next, ok)
	}
}

func TestGetValues(t *testing.T) {
	hdr := []byte("Received: one\nsubject: Hello\r\n  world \r\nstray line\nReceived: two\n\tfolded\nFROM : x@y\n")
	if v, ok := Strict.Get(hdr, "Subject"); !ok || v != "Hello  world" {
		t.Errorf("Get Subject = %q, %v", v, ok)
	}
	if v, ok := Strict.Get(hdr, "from"); ok {
		t.Errorf("Strict Get from = %q", v)
	}
	if v, ok := Obsolete.Get(hdr, "from"); !ok || v != "x@y" {
		t.Errorf("Obsolete Get from = %q, %v", v, ok)
	}
	if v, ok := Strict.Get(hdr, "Subjec"); ok {
		t.Errorf("prefix matched: %q", v)
	}
	if got := Strict.Values(hdr, "RECEIVED"); !slices.Equal(got, []string{"one", "two\tfolded"}) {
		t.Errorf("Values = %q", got)
	}
}

func TestUnfold(t *testing.T) {
	for in, want := range map[string]string{
		" a\r\n b\r\n": " a b",
		"a\n\tb":       "a\tb",
		"a\rb\n c":     "a\rb c",
		"  \n":         "  ",
		"x":            "x",
	} {
		if got := Unfold([]byte(in)); got != want {
			t.Errorf("Unfold(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestNoAlloc(t *testing.T) {
	msg := []byte(strings.Repeat("Received: from a by b\r\n\tfor <c>\r\n", 20) + "Subject: s\r\n\r\nbody")
	n := testing.AllocsPerRun(100, func() {
		hdr, _, _ := Cut(msg)
		for pos := 0; ; {
			_, next, ok := Strict.Next(hdr, pos)
			if !ok {
				break
			}
			pos = next
		}
		Strict.Get(hdr, "Subject")
	})
	if n != 0 {
		t.Errorf("%v allocations", n)
	}
}

func FuzzHeader(f *testing.F) {
	for _, s := range []string{
		"A: 1\r\n b\r\n\r\nbody", "From : x\nSubject: y\n\nz", "\n", " x\n", "A:\n", "A: b\n \n\nc", "From x\nA: b\r\n\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		hdr, body, found := Cut(msg)
		if found {
			if len(hdr)+len(body) >= len(msg) || !bytes.HasPrefix(msg, hdr) || !bytes.HasSuffix(msg, body) {
				t.Fatalf("Cut lost or kept too much: %q %q", hdr, body)
			}
		} else if !bytes.Equal(hdr, msg) || body != nil {
			t.Fatal("not found but split")
		}
		for _, s := range []Syntax{Strict, Obsolete, Lenient} {
			pos := 0
			for {
				fl, next, ok := s.Next(hdr, pos)
				if !ok {
					if next != pos {
						t.Fatal("moved without a field")
					}
					break
				}
				if next <= pos || !bytes.Equal(fl.Raw, hdr[pos:next]) || !bytes.HasPrefix(fl.Raw, fl.Name) || !bytes.HasSuffix(fl.Raw, fl.Value) {
					t.Fatalf("field %q inconsistent", fl.Raw)
				}
				if v, ok := s.Get(hdr, string(fl.Name)); !ok || strings.ContainsRune(v, '\n') {
					t.Fatalf("Get(%q) = %q, %v", fl.Name, v, ok)
				}
				pos = next
			}
			if pos > 0 && s == Strict {
				if _, _, ok := Obsolete.Next(hdr, 0); !ok {
					t.Fatal("Strict field not an Obsolete field")
				}
			}
			_ = s.Values(hdr, "a")
		}
	})
}
