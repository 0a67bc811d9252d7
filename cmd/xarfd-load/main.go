// Command xarfd-load measures an SMTP server: it sends -n messages of
// -size bytes over -c parallel sessions (each session sends its share
// back to back on one connection) and prints msgs/s and the p50/p99 time
// from MAIL FROM to the final reply of DATA ("time to 250"). -addr may
// list several servers, comma separated: session i goes to server i mod
// their number, so that -c 32 over three cluster nodes loads each alike.
//
// -kind trap or -kind arf sends messages of the report path instead
// (internal/loadmsg): trap hits relayed with a Received hop from a public
// address, or ARF reports with a public Source-IP, each with the
// recipient in headers, body and URLs, of about -size bytes. -pid names
// the server's process: its CPU time (user and system, from
// /proc/PID/stat) during the run is printed per message, a figure that
// CPU contention on a shared host disturbs far less than msgs/s.
//
// With -flood it opens -c sessions at once, each sending one message of
// -size bytes, and reports every session's final reply, the server's peak
// RSS (VmHWM of /proc/PID/status, -pid) and, with -metrics, the most DATA
// bytes it held at once (xarfd_smtp_inflight_bytes): the memory a
// message in flight costs, and whether the server stayed up.
//
// It can instead run one of the two baselines that scripts/bench-smtp
// measures xarfd against in the same run. -discard-listen runs a go-smtp
// server that reads every message and throws it away: the most SMTP alone
// allows on this host. -bbolt-listen runs one that stores each message's
// bytes in a bbolt file (-bbolt-file) under a UUIDv7 key and answers 250
// after the commit, with a committer that takes whatever queued while the
// previous commit ran. That is the prototype the store's design came
// from: the most durable storage allows on this disk, without anything
// else xarfd does.
//
//	xarfd-load -addr 127.0.0.1:2525 -rcpt x@trap.localhost -n 20000 -c 32 -size 2048
//	xarfd-load -flood -pid $(pidof xarfd) -metrics http://127.0.0.1:8025/metrics -c 64 -size 10485760
//	xarfd-load -discard-listen 127.0.0.1:2600
//	xarfd-load -bbolt-listen 127.0.0.1:2601 -bbolt-file /tmp/baseline.db
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/xarfd/xarfd/internal/loadmsg"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:2525", "SMTP server `host:port` to load; a comma-separated list spreads the sessions over several (the nodes of a cluster), session i on server i mod the list's length")
	n := flag.Int("n", 10000, "messages to send in all")
	c := flag.Int("c", 8, "parallel sessions")
	size := flag.Int("size", 2048, "message size in `bytes`")
	rcpt := flag.String("rcpt", "x@trap.localhost", "recipient")
	from := flag.String("from", "load@origin.example", "envelope sender")
	label := flag.String("label", "", "label printed before the figures")
	discard := flag.String("discard-listen", "", "run a discarding go-smtp server on `host:port` instead of loading one")
	bbolt := flag.String("bbolt-listen", "", "run a go-smtp server that commits every message to -bbolt-file on `host:port` instead of loading one")
	bboltFile := flag.String("bbolt-file", "", "the bbolt `file` of -bbolt-listen, created (it must not exist)")
	files := flag.String("msg", "", "send these messages (a `glob`, cycled) instead of generated ones of -size")
	kind := flag.String("kind", "", "generate report-path messages of -size: trap (relayed trap hit) or arf (feedback report); empty: plain filler messages")
	inner := flag.String("inner-rcpt", "user@isp.example", "with -kind arf, the complainant's address inside the report")
	pid := flag.Int("pid", 0, "the server's process `id`: print its CPU time per message; with -flood, read its peak RSS")
	floodMode := flag.Bool("flood", false, "send -c messages at once, one per session, and report replies and the server's memory")
	metricsURL := flag.String("metrics", "", "with -flood: the server's Prometheus `url`, for xarfd_smtp_inflight_bytes")
	declare := flag.Bool("declare-size", false, "with -flood: send SIZE= in MAIL FROM")
	flag.Parse()

	if *discard != "" || *bbolt != "" {
		if err := runBaseline(*discard, *bbolt, *bboltFile); err != nil {
			fmt.Fprintln(os.Stderr, "xarfd-load:", err)
			os.Exit(1)
		}
		return
	}
	msgs := [][]byte{message(*size)}
	if *kind != "" {
		var err error
		if msgs, err = generated(*kind, *size, *rcpt, *inner); err != nil {
			fmt.Fprintln(os.Stderr, "xarfd-load:", err)
			os.Exit(1)
		}
	}
	if *files != "" {
		var err error
		if msgs, err = readMessages(*files); err != nil {
			fmt.Fprintln(os.Stderr, "xarfd-load:", err)
			os.Exit(1)
		}
		total := 0
		for _, m := range msgs {
			total += len(m)
		}
		*size = total / len(msgs)
	}
	if *floodMode {
		r, err := flood(*addr, *from, *rcpt, *c, msgs[0], *declare, *pid, *metricsURL)
		if err != nil {
			fmt.Fprintln(os.Stderr, "xarfd-load:", err)
			os.Exit(1)
		}
		r.print(os.Stdout, *label, *c, len(msgs[0]))
		if !r.alive || r.codes[250]+r.codes[452] != *c {
			if r.firstErr != nil {
				fmt.Fprintf(os.Stderr, "first error: %v\n", r.firstErr)
			}
			os.Exit(1)
		}
		return
	}
	var cpu0 time.Duration
	if *pid > 0 {
		var err error
		if cpu0, err = procCPU(*pid); err != nil {
			fmt.Fprintln(os.Stderr, "xarfd-load:", err)
			os.Exit(1)
		}
	}
	r, err := load(strings.Split(*addr, ","), *from, *rcpt, *n, *c, msgs)
	if err != nil {
		fmt.Fprintln(os.Stderr, "xarfd-load:", err)
		os.Exit(1)
	}
	if *label != "" {
		fmt.Printf("%-8s ", *label)
	}
	fmt.Printf("c=%-3d size=%-6d n=%-6d %8.0f msgs/s  p50=%-9s p99=%-9s errors=%d",
		*c, *size, r.sent, r.rate(), r.pct(50), r.pct(99), r.errors)
	if *pid > 0 && r.sent > 0 {
		cpu1, err := procCPU(*pid)
		if err != nil {
			fmt.Fprintln(os.Stderr, "xarfd-load:", err)
			os.Exit(1)
		}
		fmt.Printf("  cpu=%.0fµs/msg", float64((cpu1-cpu0).Microseconds())/float64(r.sent))
	}
	fmt.Println()
	if r.errors > 0 {
		fmt.Fprintf(os.Stderr, "first error: %v\n", r.firstErr)
		os.Exit(1)
	}
}

// generated returns 64 report-path messages of kind (distinct
// Message-IDs, so that nothing downstream can take them for one).
func generated(kind string, size int, rcpt, inner string) ([][]byte, error) {
	if kind == loadmsg.Trap {
		inner = rcpt
	}
	var msgs [][]byte
	for i := range 64 {
		m, err := loadmsg.Message(kind, size, inner, i)
		if err != nil {
			return nil, err
		}
		msgs = append(msgs, m)
	}
	return msgs, nil
}

// procCPU is the CPU time (user and system) process pid has used, from
// /proc/pid/stat.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; fields count from the
	// ')' that ends it. utime and stime are fields 14 and 15.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	var ticks int64
	for _, s := range f[11:13] {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		ticks += v
	}
	// USER_HZ is 100 on every Linux ABI Go supports.
	return time.Duration(ticks) * (time.Second / 100), nil
}

// message builds a plausible mail of exactly size bytes (at least the
// headers), with CRLF lines of 76 characters like real MIME bodies.
func message(size int) []byte {
	var b bytes.Buffer
	b.WriteString("From: load@origin.example\r\nTo: x@trap.localhost\r\nSubject: load test\r\nMessage-ID: <load@origin.example>\r\n\r\n")
	line := bytes.Repeat([]byte("x"), 76)
	for b.Len()+78 <= size {
		b.Write(line)
		b.WriteString("\r\n")
	}
	for b.Len() < size-2 {
		b.WriteByte('y')
	}
	b.WriteString("\r\n")
	return b.Bytes()
}

type result struct {
	sent     int
	errors   int
	firstErr error
	elapsed  time.Duration
	lat      []time.Duration
}

func (r *result) rate() float64 { return float64(r.sent) / r.elapsed.Seconds() }

func (r *result) pct(p int) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	i := (len(r.lat)*p + 99) / 100
	return r.lat[min(max(i-1, 0), len(r.lat)-1)].Round(time.Microsecond)
}

// readMessages loads the files matching glob, with CRLF line endings as
// SMTP carries them.
func readMessages(glob string) ([][]byte, error) {
	names, err := filepath.Glob(glob)
	if err != nil || len(names) == 0 {
		return nil, fmt.Errorf("-msg %q matches no file", glob)
	}
	var msgs [][]byte
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			return nil, err
		}
		b = bytes.ReplaceAll(bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n")), []byte("\n"), []byte("\r\n"))
		msgs = append(msgs, b)
	}
	return msgs, nil
}

// load sends n messages over c sessions, session w to addrs[w mod
// len(addrs)].
func load(addrs []string, from, rcpt string, n, c int, msgs [][]byte) (*result, error) {
	if c < 1 || n < c {
		return nil, errors.New("need -c >= 1 and -n >= -c")
	}
	if len(addrs) == 0 || slices.Contains(addrs, "") {
		return nil, errors.New("-addr: empty address")
	}
	var (
		next     atomic.Int64
		mu       sync.Mutex
		res      = &result{}
		wg       sync.WaitGroup
		firstErr error
	)
	start := time.Now()
	for w := 0; w < c; w++ {
		wg.Go(func() {
			var lat []time.Duration
			errs := 0
			var werr error
			cl, err := smtp.Dial(addrs[w%len(addrs)])
			if err == nil {
				err = cl.Hello("load.example")
			}
			if err != nil {
				mu.Lock()
				res.errors++
				firstErr = cmp(firstErr, err)
				mu.Unlock()
				return
			}
			defer cl.Close()
			for {
				i := next.Add(1)
				if i > int64(n) {
					break
				}
				t0 := time.Now()
				if err := sendOne(cl, from, rcpt, msgs[int(i)%len(msgs)]); err != nil {
					errs++
					werr = cmp(werr, err)
					cl.Reset()
					continue
				}
				lat = append(lat, time.Since(t0))
			}
			cl.Quit()
			mu.Lock()
			res.lat = append(res.lat, lat...)
			res.errors += errs
			firstErr = cmp(firstErr, werr)
			mu.Unlock()
		})
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	res.sent = len(res.lat)
	res.firstErr = firstErr
	slices.Sort(res.lat)
	return res, nil
}

func cmp(have, err error) error {
	if have != nil {
		return have
	}
	return err
}

func sendOne(cl *smtp.Client, from, rcpt string, msg []byte) error {
	if err := cl.Mail(from, nil); err != nil {
		return err
	}
	if err := cl.Rcpt(rcpt, nil); err != nil {
		return err
	}
	w, err := cl.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(msg); err != nil {
		return err
	}
	return w.Close()
}

// runBaseline serves the discarding server on discardAddr, or the bbolt
// one on bboltAddr, until SIGINT or SIGTERM.
func runBaseline(discardAddr, bboltAddr, bboltFile string) error {
	addr, name := discardAddr, "discard"
	backend := smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return discardSession{}, nil })
	if bboltAddr != "" {
		if discardAddr != "" {
			return errors.New("-discard-listen and -bbolt-listen exclude each other")
		}
		if bboltFile == "" {
			return errors.New("-bbolt-listen needs -bbolt-file")
		}
		b, err := openBaseline(bboltFile)
		if err != nil {
			return err
		}
		defer b.close()
		addr, name, backend = bboltAddr, "bbolt", smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return b.session(), nil })
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	s := baselineServer(backend)
	fmt.Fprintf(os.Stderr, "%s server listening on %s\n", name, l.Addr())
	go func() {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
		<-ch
		s.Close()
	}()
	if err := s.Serve(l); err != nil && !errors.Is(err, smtp.ErrServerClosed) {
		return err
	}
	return nil
}

// baselineServer is a go-smtp server with the limits xarfd uses.
func baselineServer(b smtp.Backend) *smtp.Server {
	s := smtp.NewServer(b)
	s.Domain = "baseline.localhost"
	s.MaxMessageBytes = 25 << 20
	s.MaxRecipients = 50
	s.ReadTimeout = time.Minute
	s.WriteTimeout = time.Minute
	return s
}

type discardSession struct{}

func (discardSession) Reset()                               { /* nothing kept between messages */ }
func (discardSession) Logout() error                        { return nil }
func (discardSession) Mail(string, *smtp.MailOptions) error { return nil }
func (discardSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (discardSession) Data(r io.Reader) error               { _, err := io.Copy(io.Discard, r); return err }
