package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"

	"github.com/xarfd/xarfd/config"
	"github.com/xarfd/xarfd/ingest"
	"github.com/xarfd/xarfd/smtpd"
	"github.com/xarfd/xarfd/store"
)

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// cmdParse runs files through the daemon's pipeline offline and prints one
// XARF document per file as JSON Lines, each naming its file; no store, no
// network.
func cmdParse(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("parse", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "configuration `file` (default: the embedded default)")
	channel := fs.String("channel", "", "channel `name` whose policy applies (default: the channel -rcpt routes to, else the first arf channel)")
	peer := fs.String("peer", "", "SMTP peer `IP[:PORT]`; without it the message counts as forwarded")
	from := fs.String("mail-from", "", "envelope sender (MAIL FROM) when -peer is given")
	var rcpts multiFlag
	fs.Var(&rcpts, "rcpt", "envelope recipient `ADDR` (repeatable)")
	indicators := fs.Bool("indicators", false, "print the indicators intel would extract from the stored (redacted) message instead of the report")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: xarfd parse [-config FILE] [-channel NAME] [-peer IP[:PORT]] [-rcpt ADDR]... FILE... (- = stdin)")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	cfg, err := config.Load(*path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	ch, err := pickChannel(cfg, *channel, rcpts)
	if err != nil {
		fmt.Fprintln(stderr, "xarfd parse:", err)
		return 2
	}
	env := store.Envelope{Via: "file", MailFrom: *from}
	if *peer != "" {
		ap, err := parsePeer(*peer)
		if err != nil {
			fmt.Fprintln(stderr, "xarfd parse: -peer:", err)
			return 2
		}
		env.Via, env.PeerIP, env.PeerPort = "smtp", ap.Addr(), ap.Port()
	}
	in, err := ingest.New(cfg, nil, ingest.Options{})
	if err != nil {
		fmt.Fprintln(stderr, "xarfd parse:", err)
		return 1
	}
	out := json.NewEncoder(stdout)
	status := 0
	for _, name := range fs.Args() {
		raw, err := readInput(name, stdin)
		if err == nil {
			var e store.Entry
			var res ingest.Result
			e, res, err = in.Convert(env, ingest.Delivery{Channel: ch, Rcpts: rcpts}, raw)
			if err == nil && e.Report != nil {
				if *indicators {
					writeIndicators(stdout, name, cfg, ch.Name, env, e)
					continue
				}
				writeReportLine(stdout, name, e.Report.XARF)
				continue
			}
			if err == nil {
				err = errors.New(res.Reason)
			}
		}
		status = 1
		out.Encode(struct {
			File  string `json:"file"`
			Error string `json:"error"`
		}{name, err.Error()})
	}
	return status
}

// writeReportLine writes the document as stored with "file" as its first
// member: every line names its input, as the error lines do, and stays one
// XARF document (the core schema allows members it does not define), so
// scripts that validate or read each line as XARF keep working.
func writeReportLine(w io.Writer, name string, doc []byte) {
	f, _ := json.Marshal(name) // a string always encodes
	body := bytes.TrimLeft(doc, " \t\r\n")
	if len(body) < 2 || body[0] != '{' {
		w.Write(append(append([]byte(nil), doc...), '\n')) // never happens: a document is an object
		return
	}
	line := make([]byte, 0, len(doc)+len(f)+10)
	line = append(append(append(line, `{"file":`...), f...), ',')
	line = append(append(line, body[1:]...), '\n')
	w.Write(line)
}

func pickChannel(cfg *config.Config, name string, rcpts []string) (*config.Channel, error) {
	if name != "" {
		if ch := cfg.Channel(name); ch != nil {
			return ch, nil
		}
		return nil, fmt.Errorf("no channel is named %q in %s", name, cfg.Source)
	}
	r := smtpd.NewRouter(cfg.Channels)
	for _, a := range rcpts {
		if ch := r.Route(a); ch != nil {
			return ch, nil
		}
	}
	for i := range cfg.Channels {
		if cfg.Channels[i].Kind == config.KindARF {
			return &cfg.Channels[i], nil
		}
	}
	return &cfg.Channels[0], nil
}

func parsePeer(s string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
	}
	a, err := netip.ParseAddr(strings.Trim(s, "[]"))
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q is not IP or IP:PORT", s)
	}
	return netip.AddrPortFrom(a.Unmap(), 0), nil
}

func readInput(name string, stdin io.Reader) ([]byte, error) {
	if name == "-" {
		return io.ReadAll(io.LimitReader(stdin, 64<<20))
	}
	b, err := os.ReadFile(name)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			return nil, pe.Err
		}
	}
	return b, err
}
