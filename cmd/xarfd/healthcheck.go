package main

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// cmdHealthcheck asks a running daemon's GET /healthz and exits 0 when it
// answers 200, 1 otherwise. It is what the container's HEALTHCHECK runs:
// the image has no shell and no curl.
func cmdHealthcheck(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	apiURL := fs.String("api", "http://127.0.0.1:8025", "base `URL` of the xarfd HTTP API")
	timeout := fs.Duration("timeout", 5*time.Second, "give up after this `duration`")
	quiet := fs.Bool("q", false, "print nothing when healthy")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "xarfd healthcheck: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	base, err := apiBase(*apiURL)
	if err != nil {
		fmt.Fprintf(stderr, "xarfd healthcheck: %v\n", err)
		return 2
	}
	client := &http.Client{Timeout: *timeout}
	resp, err := client.Get(base + "/healthz")
	if err != nil {
		fmt.Fprintf(stderr, "xarfd healthcheck: %v\n", err)
		return 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "xarfd healthcheck: %s: %s %s\n", base, resp.Status, strings.TrimSpace(string(body)))
		return 1
	}
	if !*quiet {
		fmt.Fprintf(stdout, "%s: healthy\n", base)
	}
	return 0
}

// apiBase checks an -api flag and returns it without a trailing slash.
func apiBase(v string) (string, error) {
	u, err := url.Parse(strings.TrimRight(v, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("-api %q: want an http(s) URL such as http://127.0.0.1:8025", v)
	}
	return u.String(), nil
}
