package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/rs/zerolog"

	"github.com/xarfd/xarfd/api"
	"github.com/xarfd/xarfd/cases"
	"github.com/xarfd/xarfd/config"
	"github.com/xarfd/xarfd/reporter/contact"
	"github.com/xarfd/xarfd/reporter/deliver"
	"github.com/xarfd/xarfd/store"
)

// caseMailer sends subscriber notifications through the reporter's
// outbound delivery: the same smarthost or MX, TLS and DKIM as reports,
// from the configuration in force at each mail.
type caseMailer struct {
	cfg    *atomic.Pointer[config.Config]
	mxPort int
}

func (m caseMailer) Send(ctx context.Context, from string, to []string, msg []byte) error {
	cfg := m.cfg.Load()
	signer, err := deliver.NewSigner(&cfg.Reporter.DKIM)
	if err != nil {
		return err
	}
	if signer != nil {
		if msg, err = signer.Sign(msg); err != nil {
			return fmt.Errorf("DKIM-signing the notification: %w", err)
		}
	}
	sh := cfg.Reporter.Smarthost
	var password string
	if sh.PasswordFile != "" {
		b, err := os.ReadFile(sh.PasswordFile)
		if err != nil {
			return fmt.Errorf("reporter.smarthost.password_file: %w", err)
		}
		password = strings.TrimRight(string(b), "\r\n")
	}
	d := &deliver.SMTP{Smarthost: sh.Address, TLS: sh.TLS, Username: sh.Username, Password: password,
		HeloName: cfg.Hostname, Resolver: contact.NewDNSResolver(cfg.Resolver), MXPort: m.mxPort}
	tr, err := d.Send(ctx, from, to, msg, nil)
	if err != nil {
		return err
	}
	if len(tr.Accepted) == 0 {
		return fmt.Errorf("no recipient accepted: %v", tr.Rejected)
	}
	return nil
}

// newCases builds the own-network case worker of serve.
func newCases(cfg *config.Config, cur *atomic.Pointer[config.Config], st *store.Store, hub *api.CaseHub, log zerolog.Logger) (*cases.Manager, error) {
	mx := 0
	if p := os.Getenv("XARFD_TEST_MX_PORT"); p != "" {
		mx, _ = strconv.Atoi(p) // checked by newReporter
	}
	return cases.New(cfg, st, cases.Options{
		Logger:   log.With().Str("component", "cases").Logger(),
		Mailer:   caseMailer{cfg: cur, mxPort: mx},
		OnChange: hub.Publish,
	})
}

// cmdCases lists own-network cases through the HTTP API as JSON Lines,
// newest first, following next_cursor.
func cmdCases(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("cases", flag.ContinueOnError)
	fs.SetOutput(stderr)
	apiURL := fs.String("api", "http://127.0.0.1:8025", "base `URL` of the xarfd HTTP API")
	tokenFile := fs.String("token-file", "", "read the bearer token from `file` (default: $XARFD_TOKEN)")
	state := fs.String("state", "", "only cases in `state`: open, notified, restricted or resolved")
	sub := fs.String("subscriber", "", "only cases of subscriber `id`")
	limit := fs.Int("limit", 0, "print at most `n` cases (0: all)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: xarfd cases [-api URL] [-token-file FILE] [-state S] [-subscriber ID] [-limit N]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "xarfd cases: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "xarfd cases: "+format+"\n", a...)
		return 1
	}
	if *limit < 0 {
		return fail("-limit: want 0 (all) or a positive number")
	}
	b, err := apiBase(*apiURL)
	if err != nil {
		return fail("%v", err)
	}
	base, _ := url.Parse(b) // apiBase parsed it
	tok, err := apiToken(*tokenFile)
	if err != nil {
		return fail("%v", err)
	}
	q := url.Values{}
	if *state != "" {
		q.Set("state", *state)
	}
	if *sub != "" {
		q.Set("subscriber", *sub)
	}
	if err := printPages(stdout, base.JoinPath("/api/v1/cases").String(), q, tok, *limit, "cases", "case"); err != nil {
		return fail("%v", err)
	}
	return 0
}
