package redact

import (
	"bytes"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
)

const trap = "Trap.Box7@Example.net"

func TestHMACStableAndKeyed(t *testing.T) {
	msg := []byte("To: " + trap + "\r\nX-H: " + md5hex("trap.box7@example.net") + "\r\n\r\nhi trap.box7@example.net\r\n")
	r1 := mustNew(t, Policy{Mode: ModeHMAC, HMACKey: testKey})
	r1b := mustNew(t, Policy{Mode: ModeHMAC, HMACKey: slices.Clone(testKey)})
	r2 := mustNew(t, Policy{Mode: ModeHMAC, HMACKey: []byte("another-key-of-16+bytes")})
	out1, _, err := r1.Apply(msg, []string{trap})
	if err != nil {
		t.Fatal(err)
	}
	out1b, _, _ := r1b.Apply(msg, []string{"<trap.box7@example.net>"})
	out2, _, _ := r2.Apply(msg, []string{trap})
	if !bytes.Equal(out1, out1b) {
		t.Errorf("same key, different output:\n%s\n%s", out1, out1b)
	}
	if bytes.Equal(out1, out2) {
		t.Error("different keys, same output")
	}
	p := r1.Pseudonym(trap)
	if !regexp.MustCompile(`^r-[0-9a-f]{12}@redacted\.invalid$`).MatchString(p) {
		t.Fatalf("pseudonym %q", p)
	}
	if p != r1.Pseudonym("trap.box7@EXAMPLE.net") || p == r2.Pseudonym(trap) {
		t.Error("pseudonym not stable per key or not keyed")
	}
	if !bytes.Contains(out1, []byte("To: "+p+"\r\n")) || !bytes.Contains(out1, []byte("hi "+p)) {
		t.Errorf("pseudonym not used:\n%s", out1)
	}
	// A digest is replaced by the same digest of the pseudonym.
	if !bytes.Contains(out1, []byte("X-H: "+md5hex(p)+"\r\n")) {
		t.Errorf("md5 not replaced by md5 of the pseudonym:\n%s", out1)
	}
	assertNoLeak(t, out1, []string{trap})
}

func md5hex(s string) string { h := md5.Sum([]byte(s)); return hex.EncodeToString(h[:]) }

func TestSummaryCounts(t *testing.T) {
	a := "trap.box7@example.net"
	msg := "To: <" + a + ">, " + strings.ToUpper(a) + "\r\n" +
		"Subject: =?utf-8?b?" + base64.StdEncoding.EncodeToString([]byte("to "+a)) + "?=\r\n" +
		"List-Unsubscribe: <https://x.example/u?e=" + strings.ReplaceAll(a, "@", "%40") +
		"&t=" + base64.RawURLEncoding.EncodeToString([]byte("q"+a)) + ">\r\n" +
		"Content-Type: multipart/mixed; boundary=zz\r\n\r\n" +
		"--zz\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nid " + hex.EncodeToString([]byte(a)) + " " + md5hex(a) + " trap.box7=40example.net\r\n" +
		"--zz\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n" + base64.StdEncoding.EncodeToString([]byte("b "+a+" c")) + "\r\n--zz--\r\n"
	r := mustNew(t, Policy{})
	out, sum, err := r.Apply([]byte(msg), []string{a})
	if err != nil {
		t.Fatal(err)
	}
	// The url-safe token happens to use no character outside the common
	// alphabet, so it counts as base64: base64url needs '-' or '_' in sight.
	want := map[Form]int{FormLiteral: 3, FormEncodedWord: 1, FormURL: 1, FormBase64: 1, FormHex: 1, FormMD5: 1, FormQuotedPrintable: 1, FormBase64Part: 1}
	for f := Form(0); f < numForms; f++ {
		if sum.Count(f) != want[f] {
			t.Errorf("%s: got %d, want %d (summary %s)\n%s", f, sum.Count(f), want[f], sum, out)
		}
	}
	if sum.Total() != 9 || sum.Addresses() != 1 {
		t.Errorf("total %d addresses %d", sum.Total(), sum.Addresses())
	}
	if got := sum.String(); got != "literal:3,encoded-word:1,quoted-printable:1,url:1,base64:1,hex:1,md5:1,base64-part:1" {
		t.Errorf("String() = %q", got)
	}
	j, _ := json.Marshal(sum)
	if string(j) != `{"addresses":1,"forms":{"base64":1,"base64-part":1,"encoded-word":1,"hex":1,"literal":3,"md5":1,"quoted-printable":1,"url":1}}` {
		t.Errorf("JSON %s", j)
	}
	if !bytes.HasPrefix(out, []byte("X-Xarfd-Redacted: mx.test.example; mode=token; forms="+sum.String()+"\r\n")) {
		t.Errorf("header: %q", out[:80])
	}
	assertNoLeak(t, out, []string{a})
}

func TestNothingFoundOnlyAddsHeader(t *testing.T) {
	raw := []byte("From: a@b.example\nSubject: x\n\nbody =?x?= %41 =3D\n")
	r := mustNew(t, Policy{})
	out, sum, err := r.Apply(raw, []string{trap})
	if err != nil {
		t.Fatal(err)
	}
	want := "X-Xarfd-Redacted: mx.test.example; mode=token; forms=none\n" + string(raw)
	if string(out) != want || sum.Total() != 0 {
		t.Errorf("got %q", out)
	}
	// No addresses at all: still the header, nothing else.
	out, _, _ = r.Apply(raw, nil)
	if string(out) != want {
		t.Errorf("got %q", out)
	}
}

func TestBase64PartKeepsLayout(t *testing.T) {
	text := strings.Repeat("lorem ipsum ", 10) + trap + strings.Repeat(" dolor", 20)
	enc := base64.StdEncoding.EncodeToString([]byte(text))
	var lines []string
	for len(enc) > 64 {
		lines, enc = append(lines, enc[:64]), enc[64:]
	}
	lines = append(lines, enc)
	raw := "Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n" + strings.Join(lines, "\r\n") + "\r\n"
	out, _, err := mustNew(t, Policy{}).Apply([]byte(raw), []string{trap})
	if err != nil {
		t.Fatal(err)
	}
	body := string(out[strings.Index(string(out), "\r\n\r\n")+4:])
	got := strings.Split(strings.TrimSuffix(body, "\r\n"), "\r\n")
	for _, l := range got[:len(got)-1] {
		if len(l) != 64 {
			t.Fatalf("line length %d, want 64:\n%s", len(l), body)
		}
	}
	dec, err := base64.StdEncoding.DecodeString(strings.Join(got, ""))
	if err != nil || string(dec) != strings.Replace(text, trap, TokenAddress, 1) {
		t.Fatalf("decoded %q, %v", dec, err)
	}
}

func TestBase64BlobKeepsSurroundings(t *testing.T) {
	// The address at every alignment inside a token that is itself inside
	// a URL path: only the quanta carrying the address may change, and the
	// decoded blob must hold the pseudonym between the untouched neighbours.
	for align := 0; align < 3; align++ {
		pre := strings.Repeat("p", align+3)
		blob := base64.RawURLEncoding.EncodeToString([]byte(pre + trap + "|tail-data"))
		raw := "X: https://x.example/u/" + blob + "/confirm\r\n\r\n"
		out, _, err := mustNew(t, Policy{}).Apply([]byte(raw), []string{trap})
		if err != nil {
			t.Fatal(err)
		}
		s := string(out)
		i := strings.Index(s, "/u/") + 3
		j := strings.Index(s, "/confirm")
		if j < 0 {
			t.Fatalf("URL structure lost: %s", s)
		}
		dec, err := base64.RawURLEncoding.DecodeString(s[i:j])
		if err != nil {
			t.Fatalf("align %d: %v in %s", align, err, s)
		}
		if !regexp.MustCompile(`^` + pre + `redacted[a-z]*@redacted\.invalid\|tail-data$`).Match(dec) {
			t.Errorf("align %d: decoded %q", align, dec)
		}
		assertNoLeak(t, out, []string{trap})
	}
}

func TestMessageRecipients(t *testing.T) {
	raw, err := os.ReadFile("testdata/12-arf.eml")
	if err != nil {
		t.Fatal(err)
	}
	got := MessageRecipients(raw)
	for _, want := range []string{"fbl@example.net", "complainant@provider.example", "second@provider.example"} {
		if !slices.Contains(got, want) {
			t.Errorf("missing %s in %q", want, got)
		}
	}
	if slices.Contains(got, "news@sender.example") || slices.Contains(got, "fbl@provider.example") {
		t.Errorf("sender counted as recipient: %q", got)
	}
	raw = []byte("Received: from a by b with ESMTP\r\n\tfor <Deep@Trap.example>; Mon, 1 Jan 2024 00:00:00 +0000\r\n" +
		"Received: by c for other@x.example; Mon\r\nX-Envelope-To: env@x.example\r\nEnvelope-To: env2@x.example\r\n" +
		"Content-Type: text/rfc822-headers\r\n\r\nTo: =?utf-8?q?H=C3=A9l=C3=A8ne?= <helene@x.example>\r\nBcc: broken <<bcc@x.example\r\n\r\n")
	got = MessageRecipients(raw)
	for _, want := range []string{"Deep@Trap.example", "other@x.example", "env@x.example", "env2@x.example", "helene@x.example", "bcc@x.example"} {
		if !slices.Contains(got, want) {
			t.Errorf("missing %s in %q", want, got)
		}
	}
}

func TestNewValidates(t *testing.T) {
	for name, p := range map[string]Policy{
		"no host":     {},
		"short key":   {Hostname: "h", Mode: ModeHMAC, HMACKey: []byte("short")},
		"bad mode":    {Hostname: "h", Mode: 7},
		"bad addr":    {Hostname: "h", Addresses: []string{"secret-local-part"}},
		"invalid tld": {Hostname: "h", Domains: []string{"invalid"}},
		"host inject": {Hostname: "h\r\nX: y"},
	} {
		if _, err := New(p); err == nil {
			t.Errorf("%s: accepted", name)
		} else if strings.Contains(err.Error(), "secret-local-part") {
			t.Errorf("%s: error echoes the value: %v", name, err)
		}
	}
	if _, err := ParseMode("bogus"); err == nil {
		t.Error("ParseMode accepted bogus")
	}
}

func TestUnredactable(t *testing.T) {
	r := mustNew(t, Policy{})
	deep := "Subject: x\r\n\r\n" + trap + "\r\n"
	for i := 0; i < maxDepth+5; i++ {
		deep = "Content-Type: message/rfc822\r\n\r\n" + deep
	}
	for name, raw := range map[string]string{
		"too deep": deep,
		"boundary": "Content-Type: multipart/mixed; boundary=\"" + trap + "\"\r\n\r\n--" + trap + "\r\n\r\nx\r\n--" + trap + "--\r\n",
	} {
		out, sum, err := r.Apply([]byte(raw), []string{trap})
		if !errors.Is(err, ErrUnredactable) || out != nil || sum.Total() != 0 {
			t.Errorf("%s: got %v, %d bytes", name, err, len(out))
		}
		if err != nil && strings.Contains(strings.ToLower(err.Error()), "trap.box7") {
			t.Errorf("%s: error text leaks: %v", name, err)
		}
	}
}

func TestOddInputsDoNotPanic(t *testing.T) {
	r := mustNew(t, Policy{Domains: []string{"trap.example"}, LocalPart: true})
	for _, raw := range []string{
		"", "\r\n", "\n\n\n", "no header at all " + trap, "X: " + trap, ":\r\n\r\n", " leading\r\n\r\n",
		"Content-Type: multipart/mixed\r\n\r\n--\r\n" + trap,
		"Content-Type: multipart/mixed; boundary=\r\n\r\n--\r\n--\r\n",
		"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n--b\r\n--b--\r\n--b\r\n" + trap,
		"Content-Transfer-Encoding: base64\r\n\r\n====",
		"Content-Transfer-Encoding: quoted-printable\r\n\r\n=\r\n=4\r\n=ZZ" + trap + "=",
		"Subject: =?utf-8?b?!!!?= =?x?q?=ZZ?= =??b??= =?utf-8?q?" + trap + "?=\r\n\r\n",
		"X: %\r\nY: &#\r\nZ: &#x;&#99999999999;=\r\n\r\n@@@@.trap.example a@trap.example.",
		strings.Repeat("=?utf-8?q?a?= ", 1000) + "\r\n\r\n",
		"X: " + strings.Repeat("@", 10000) + "\r\n\r\n" + strings.Repeat("a@", 5000),
	} {
		out, _, err := r.Apply([]byte(raw), []string{trap})
		if err == nil {
			assertNoLeak(t, out, []string{trap})
		} else if !errors.Is(err, ErrUnredactable) {
			t.Errorf("unexpected error %v", err)
		}
	}
}

func TestConcurrentApply(t *testing.T) {
	raw, err := os.ReadFile("testdata/11-nested.eml")
	if err != nil {
		t.Fatal(err)
	}
	r := mustNew(t, Policy{Mode: ModeHMAC, HMACKey: testKey})
	want, _, err := r.Apply(raw, []string{trap})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Go(func() {
			got, _, err := r.Apply(raw, []string{trap})
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("concurrent Apply differs: %v", err)
			}
		})
	}
	wg.Wait()
}

// A host at a configured domain keeps a valid name: a keyed, stable one in
// hmac mode, and this host's own name is not written into the redaction
// header when it is itself a trap host.
func TestTrapHostNames(t *testing.T) {
	msg := []byte("Received: from a by MX.Trap-Mailbox.example (Postfix); Tue, 4 Mar 2025 10:00:00 +0000\r\n" +
		"Received: from b by mx.trap-mailbox.example; Tue, 4 Mar 2025 10:00:00 +0000\r\n\r\nhi\r\n")
	r := mustNew(t, Policy{Hostname: "in.trap-mailbox.example", Mode: ModeHMAC, HMACKey: testKey, Domains: []string{"trap-mailbox.example"}})
	out, _, err := r.Apply(msg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(bytes.ToLower(out), []byte("trap-mailbox")) {
		t.Fatalf("trap host name survived:\n%s", out)
	}
	names := regexp.MustCompile(`by (r-[0-9a-f]{12}\.redacted\.invalid)[ ;]`).FindAllSubmatch(out, -1)
	if len(names) != 2 || !bytes.Equal(names[0][1], names[1][1]) {
		t.Fatalf("want the same pseudonymous host name twice:\n%s", out)
	}
	if !regexp.MustCompile(`^` + HeaderName + `: r-[0-9a-f]{12}\.redacted\.invalid; mode=hmac;`).Match(out) {
		t.Fatalf("redaction header names this host:\n%s", out)
	}
	// A host name in a MIME boundary cannot be rewritten: the verifier
	// refuses the message.
	b := "b.mx.trap-mailbox.example"
	msg = []byte("Content-Type: multipart/mixed; boundary=\"" + b + "\"\r\n\r\n--" + b + "\r\n\r\nhi\r\n--" + b + "--\r\n")
	if _, _, err := r.Apply(msg, nil); !errors.Is(err, ErrUnredactable) {
		t.Fatalf("host name in a boundary: want ErrUnredactable, got %v", err)
	}
}
