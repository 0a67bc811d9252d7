package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"
)

// reportsPageMax is the largest page the API serves (store.MaxLimit).
const reportsPageMax = 1000

// cmdReports lists stored reports through the HTTP API as JSON Lines,
// newest first, following next_cursor.
func cmdReports(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("reports", flag.ContinueOnError)
	fs.SetOutput(stderr)
	apiURL := fs.String("api", "http://127.0.0.1:8025", "base `URL` of the xarfd HTTP API")
	tokenFile := fs.String("token-file", "", "read the bearer token from `file` (default: $XARFD_TOKEN)")
	channel := fs.String("channel", "", "only reports of channel `name`")
	sourceIP := fs.String("source-ip", "", "only reports whose source is `ip`")
	since := fs.String("since", "", "only reports received at or after `T` (RFC 3339, or a duration such as 24h meaning that long ago)")
	until := fs.String("until", "", "only reports received before `T` (RFC 3339, or a duration)")
	origin := fs.String("origin", "", "only reports whose origin was found by `method` (source-ip, smtp-peer, received-chain, jmrp-subject, subject, …)")
	evidence := fs.String("evidence-source", "", "only reports whose evidence_source is `name` (spamtrap, user_complaint, …)")
	text := fs.String("text", "", "only reports whose document's text fields contain `text`, ignoring case (never the evidence)")
	limit := fs.Int("limit", 0, "print at most `n` reports (0: all)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: xarfd reports [-api URL] [-token-file FILE] [-channel NAME] [-source-ip IP] [-since T] [-until T] [-origin METHOD] [-evidence-source NAME] [-text TEXT] [-limit N]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "xarfd reports: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "xarfd reports: "+format+"\n", a...)
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
	if *channel != "" {
		q.Set("channel", *channel)
	}
	if *sourceIP != "" {
		ip, err := netip.ParseAddr(*sourceIP)
		if err != nil {
			return fail("-source-ip %q: not an IP address", *sourceIP)
		}
		q.Set("source_ip", ip.String())
	}
	// The API checks these (and names its parameter when it refuses one).
	for _, f := range []struct{ param, v string }{{"origin", *origin}, {"evidence_source", *evidence}, {"q", *text}} {
		if f.v != "" {
			q.Set(f.param, f.v)
		}
	}
	for _, f := range []struct{ flag, param, v string }{{"-since", "since", *since}, {"-until", "until", *until}} {
		if f.v == "" {
			continue
		}
		t, err := flagTime(f.v, time.Now())
		if err != nil {
			return fail("%s %q: want an RFC 3339 time (2026-01-02T15:04:05Z) or a duration (24h)", f.flag, f.v)
		}
		q.Set(f.param, t.Format(time.RFC3339Nano))
	}

	if err := printPages(stdout, base.String()+"/api/v1/reports", q, tok, *limit, "reports", "report"); err != nil {
		return fail("%v", err)
	}
	return 0
}

// printPages prints the items of list (each as one line of compact JSON)
// of the pages of endpoint with query q, following next_cursor, until
// the last page or limit items (0: all).
func printPages(stdout io.Writer, endpoint string, q url.Values, tok string, limit int, list, item string) error {
	client := &http.Client{Timeout: 2 * time.Minute}
	out := bufio.NewWriter(stdout)
	defer out.Flush()
	printed := 0
	for {
		page := reportsPageMax
		if limit > 0 && limit-printed < page {
			page = limit - printed
		}
		q.Set("limit", fmt.Sprint(page))
		items, next, err := fetchPage(client, endpoint+"?"+q.Encode(), tok, list)
		if err != nil {
			return err
		}
		for _, r := range items {
			var line bytes.Buffer
			if err := json.Compact(&line, r); err != nil {
				return fmt.Errorf("the API returned a %s that is not JSON: %w", item, err)
			}
			line.WriteByte('\n')
			if _, err := out.Write(line.Bytes()); err != nil {
				return fmt.Errorf("writing output: %w", err)
			}
			printed++
		}
		if next == "" || (limit > 0 && printed >= limit) {
			break
		}
		q.Set("cursor", next)
	}
	if err := out.Flush(); err != nil {
		return fmt.Errorf("writing output: %w", err)
	}
	return nil
}

// flagTime reads an RFC 3339 time or a duration before now.
func flagTime(v string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return time.Time{}, errors.New("bad time")
	}
	return now.Add(-d).UTC(), nil
}

// fetchPage GETs one page of a listing of the API whose items are in the
// field list, and returns them with the page's next_cursor.
func fetchPage(client *http.Client, u, token, list string) ([]json.RawMessage, string, error) {
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		return nil, "", err
	}
	req.Header.Set("Accept", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<30))
	if err != nil {
		return nil, "", fmt.Errorf("reading the API's reply: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		msg := strings.TrimSpace(string(body))
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			msg = e.Error
		}
		if len(msg) > 300 {
			msg = msg[:300]
		}
		hint := ""
		if resp.StatusCode == http.StatusUnauthorized {
			hint = " (set XARFD_TOKEN or -token-file)"
		}
		return nil, "", fmt.Errorf("GET %s: %s: %s%s", req.URL.Path, resp.Status, msg, hint)
	}
	var page map[string]json.RawMessage
	var items []json.RawMessage
	var next string
	err = json.Unmarshal(body, &page)
	if err == nil {
		err = json.Unmarshal(page[list], &items)
	}
	if err == nil && page["next_cursor"] != nil {
		err = json.Unmarshal(page["next_cursor"], &next)
	}
	if err != nil || page[list] == nil {
		return nil, "", fmt.Errorf("the API's reply to GET %s is not a listing of %s: %v", req.URL.Path, list, err)
	}
	return items, next, nil
}
