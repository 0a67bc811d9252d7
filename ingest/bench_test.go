package ingest

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"syscall"
	"testing"
	"time"

	"github.com/xarfd/xarfd/arf"
	"github.com/xarfd/xarfd/config"
	"github.com/xarfd/xarfd/internal/loadmsg"
	"github.com/xarfd/xarfd/redact"
	"github.com/xarfd/xarfd/store"
	"github.com/xarfd/xarfd/store/storetest"
	"github.com/xarfd/xarfd/xarf"
)

// The report path, stage by stage, on the messages the load tool sends
// (internal/loadmsg): a trap hit relayed with a Received hop from a public
// address to a redacting trap channel ("trap") and to one that does not
// redact ("trapnr"), and an ARF report with a public
// Source-IP to a plain and to a redacting ARF channel. Each stage is
// measured alone, on the output of the stages before it, so that the sum
// of the stages is the pipeline (BenchmarkPipeline) and the figure of a
// stage being rewritten can be swapped for its new one:
//
//	go test -run '^$' -bench 'Stage|Pipeline' -benchmem ./ingest/
//
// parse: arf.Parse of a report, arf.ParseHeader of a trap hit (all a
// trap conversion reads); origin: the trap's Received chain walk (a
// report's origin is its Source-IP, read by parse); redact: collecting
// the recipients and rewriting them; convert: XARF conversion and its
// JSON; commit: store.Put of the entry, fsyncs included.

const benchConfig = `
hostname: bench.localhost
sender: {org: Bench, contact: abuse@bench.localhost, domain: bench.localhost}
channels:
  - {name: trap, kind: trap, addresses: ["*@trap.localhost"], redact: {recipients: true}}
  - {name: trapnr, kind: trap, addresses: ["*@nr.localhost"]}
  - {name: fbl, kind: arf, addresses: ["fbl@localhost"]}
  - {name: fblr, kind: arf, addresses: ["fblr@localhost"], redact: {recipients: true}}
`

// benchCase is one message on its way to one channel.
type benchCase struct {
	name  string
	kind  string // loadmsg kind
	size  int
	ch    string
	rcpt  string // envelope recipient
	inner string // the spam message's recipient
}

func benchCases() []benchCase {
	var cs []benchCase
	for _, size := range []int{2560, 20 << 10} {
		kb := fmt.Sprintf("%.1fKB", float64(size)/1024)
		cs = append(cs,
			benchCase{"trap/" + kb, loadmsg.Trap, size, "trap", "x@trap.localhost", "x@trap.localhost"},
			benchCase{"trapnr/" + kb, loadmsg.Trap, size, "trapnr", "x@nr.localhost", "x@nr.localhost"},
			benchCase{"arf/" + kb, loadmsg.ARF, size, "fbl", "fbl@localhost", "user@isp.example"},
			benchCase{"arf-redact/" + kb, loadmsg.ARF, size, "fblr", "fblr@localhost", "user@isp.example"},
		)
	}
	return cs
}

type benchEnv struct {
	cfg *config.Config
	st  *store.Store
	in  *Ingester
}

func newBenchEnv(b *testing.B) *benchEnv {
	b.Helper()
	cfg, err := config.Parse([]byte(benchConfig), "bench.yaml")
	if err != nil {
		b.Fatal(err)
	}
	st := storetest.Open(b, filepath.Join(b.TempDir(), "data"))
	in, err := New(cfg, st, Options{})
	if err != nil {
		b.Fatal(err)
	}
	return &benchEnv{cfg, st, in}
}

// relayEnv is the SMTP transaction of a hit our own MX relayed: loopback
// is a trusted relay, so the origin is the Received hop.
func relayEnv() store.Envelope {
	return store.Envelope{PeerIP: netip.MustParseAddr("127.0.0.1"), PeerPort: 40000, MailFrom: "bounce@sender.example", Via: "smtp", ReceivedAt: time.Now().UTC()}
}

func (c benchCase) message(b *testing.B) []byte {
	b.Helper()
	raw, err := loadmsg.Message(c.kind, c.size, c.inner, 1)
	if err != nil {
		b.Fatal(err)
	}
	return raw
}

// input is the conversion input ingest builds for c.
func (e *benchEnv) input(b *testing.B, c benchCase, msg []byte) (xarf.Input, *config.Channel) {
	b.Helper()
	ch := e.cfg.Channel(c.ch)
	id, _ := store.NewID()
	env := relayEnv()
	m := &store.Message{ID: id, Channel: ch.Name, Envelope: env}
	in := xarf.Input{
		ReportID: m.ID.String(), Received: env.ReceivedAt, Reporter: e.in.reporter(ch),
		Sender:             xarf.Contact{Org: e.cfg.Sender.Org, Contact: e.cfg.Sender.Contact, Domain: e.cfg.Sender.Domain},
		RecipientsRedacted: ch.Redact.Recipients, Message: msg,
		Envelope: &xarf.Envelope{Peer: netip.AddrPortFrom(env.PeerIP, env.PeerPort), MailFrom: env.MailFrom},
	}
	return in, ch
}

// redacted runs the redaction stage of c (the message unchanged on a
// channel that does not redact).
func (e *benchEnv) redacted(b *testing.B, c benchCase, raw []byte) []byte {
	b.Helper()
	ch := e.cfg.Channel(c.ch)
	r := e.in.redactors[ch.Name]
	if r == nil {
		return raw
	}
	out, _, err := r.Apply(raw, e.addrs(c, raw))
	if err != nil {
		b.Fatal(err)
	}
	return out
}

// addrs is what ingest hands the redactor for c.
func (e *benchEnv) addrs(c benchCase, raw []byte) []string {
	var addrs []string
	addrs = append(addrs, c.rcpt)
	addrs = append(addrs, redact.MessageRecipients(raw)...)
	if c.kind == loadmsg.ARF {
		if p, err := arf.Parse(raw); err == nil {
			addrs = append(addrs, p.RecipientAddresses()...)
		}
	}
	return addrs
}

// cpuTime is the CPU time (user and system) this process has used.
// Wall-clock time is not a measure on a machine shared with other work;
// CPU time is, and it counts the garbage collector's work too.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// perMsg reports the CPU time per message since start (taken just before
// the benchmark loop).
func perMsg(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(cpuTime()-start)/float64(b.N)/1e3, "cpu-µs/msg")
}

func BenchmarkStage(b *testing.B) {
	e := newBenchEnv(b)
	for _, c := range benchCases() {
		raw := c.message(b)
		body := e.redacted(b, c, raw)
		b.Run("parse/"+c.name, func(b *testing.B) {
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			cpu0 := cpuTime()
			for b.Loop() {
				if c.kind == loadmsg.Trap {
					if _, err := arf.ParseHeader(body); err != nil {
						b.Fatal(err)
					}
					continue
				}
				// A redacting channel parses twice: before redaction for
				// the addresses, after it for the text fields.
				if _, err := arf.Parse(raw); err != nil {
					b.Fatal(err)
				}
				if e.in.redactors[c.ch] != nil {
					if _, err := arf.Parse(body); err != nil {
						b.Fatal(err)
					}
				}
			}
			perMsg(b, cpu0)
		})
		if c.kind == loadmsg.Trap {
			h, err := arf.ParseHeader(body)
			if err != nil {
				b.Fatal(err)
			}
			b.Run("origin/"+c.name, func(b *testing.B) {
				b.ReportAllocs()
				cpu0 := cpuTime()
				for b.Loop() {
					chain := arf.ReceivedChain(h)
					if hop, ok := arf.FirstUntrusted(chain, func(r arf.Received) bool { return r.IP.IsLoopback() }); !ok || hop.IP.String() != loadmsg.SourceIP {
						b.Fatalf("origin %v, %v", hop.IP, ok)
					}
				}
				perMsg(b, cpu0)
			})
		}
		if r := e.in.redactors[c.ch]; r != nil {
			b.Run("redact/"+c.name, func(b *testing.B) {
				b.SetBytes(int64(len(raw)))
				b.ReportAllocs()
				cpu0 := cpuTime()
				for b.Loop() {
					if _, _, err := r.Apply(raw, e.addrs(c, raw)); err != nil {
						b.Fatal(err)
					}
				}
				perMsg(b, cpu0)
			})
		}
		b.Run("convert/"+c.name, func(b *testing.B) {
			in, _ := e.input(b, c, body)
			var parsed *arf.Report
			if c.kind == loadmsg.ARF {
				parsed, _ = arf.Parse(body)
			}
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			cpu0 := cpuTime()
			for b.Loop() {
				var rep *xarf.Report
				var err error
				if c.kind == loadmsg.Trap {
					rep, err = xarf.FromTrap(in)
				} else {
					rep, err = xarf.FromARF(parsed, in)
				}
				if err != nil {
					b.Fatal(err)
				}
				if _, err := rep.MarshalJSON(); err != nil {
					b.Fatal(err)
				}
			}
			perMsg(b, cpu0)
		})
		b.Run("commit/"+c.name, func(b *testing.B) {
			ch := e.cfg.Channel(c.ch)
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			var cpu time.Duration // of Put only
			for b.Loop() {
				b.StopTimer()
				ent, res, err := e.in.Convert(relayEnv(), Delivery{Channel: ch, Rcpts: []string{c.rcpt}}, raw)
				if err != nil || !res.Report {
					b.Fatalf("Convert = %+v, %v", res, err)
				}
				b.StartTimer()
				cpu0 := cpuTime()
				if err := e.st.Put([]store.Entry{ent}); err != nil {
					b.Fatal(err)
				}
				cpu += cpuTime() - cpu0
			}
			b.ReportMetric(float64(cpu)/float64(b.N)/1e3, "cpu-µs/msg")
		})
	}
}

// BenchmarkPipeline is everything ingest does for a message except the
// commit (Ingester.Convert); BenchmarkAccept adds the commit.
func BenchmarkPipeline(b *testing.B) {
	e := newBenchEnv(b)
	for _, c := range benchCases() {
		raw := c.message(b)
		d := Delivery{Channel: e.cfg.Channel(c.ch), Rcpts: []string{c.rcpt}}
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			cpu0 := cpuTime()
			for b.Loop() {
				if _, res, err := e.in.Convert(relayEnv(), d, raw); err != nil || !res.Report {
					b.Fatalf("Convert = %+v, %v", res, err)
				}
			}
			perMsg(b, cpu0)
		})
	}
}

func BenchmarkAccept(b *testing.B) {
	e := newBenchEnv(b)
	for _, c := range benchCases() {
		raw := c.message(b)
		ds := []Delivery{{Channel: e.cfg.Channel(c.ch), Rcpts: []string{c.rcpt}}}
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			cpu0 := cpuTime()
			for b.Loop() {
				if res, err := e.in.Accept(relayEnv(), ds, raw); err != nil || !res[0].Report {
					b.Fatalf("Accept = %+v, %v", res, err)
				}
			}
			perMsg(b, cpu0)
		})
	}
}

// BenchmarkCopies counts what one large message costs in memory on each
// stage: bytes allocated per message as a multiple of its size
// ("copies"). A stage that reads the message without copying it is near
// 0; each full copy adds 1. The 10 MB message is above XARF's 5 MiB
// evidence limit (the evidence is its header), the 4 MB one below it (the
// evidence is the message in base64).
func BenchmarkCopies(b *testing.B) {
	e := newBenchEnv(b)
	for _, size := range []int{4 << 20, 10 << 20} {
		for _, c := range []benchCase{
			{"trap-redact", loadmsg.Trap, size, "trap", "x@trap.localhost", "x@trap.localhost"},
			{"trap", loadmsg.Trap, size, "trapnr", "x@nr.localhost", "x@nr.localhost"},
			{"arf", loadmsg.ARF, size, "fbl", "fbl@localhost", "user@isp.example"},
			{"arf-redact", loadmsg.ARF, size, "fblr", "fblr@localhost", "user@isp.example"},
		} {
			raw := c.message(b)
			name := fmt.Sprintf("%dMB/%s", size>>20, c.name)
			d := Delivery{Channel: e.cfg.Channel(c.ch), Rcpts: []string{c.rcpt}}
			if r := e.in.redactors[c.ch]; r != nil {
				b.Run("redact/"+name, func(b *testing.B) {
					var alloc, peak uint64
					for b.Loop() {
						alloc += allocated(func() {
							if _, _, err := r.Apply(raw, e.addrs(c, raw)); err != nil {
								b.Fatal(err)
							}
						}, &peak)
					}
					reportCopies(b, alloc, peak, len(raw))
				})
			}
			b.Run("pipeline/"+name, func(b *testing.B) {
				var alloc, peak uint64
				for b.Loop() {
					alloc += allocated(func() {
						if _, res, err := e.in.Convert(relayEnv(), d, raw); err != nil || !res.Report {
							b.Fatalf("Convert = %+v, %v", res, err)
						}
					}, &peak)
				}
				reportCopies(b, alloc, peak, len(raw))
			})
			b.Run("commit/"+name, func(b *testing.B) {
				var alloc, peak uint64
				for b.Loop() {
					ent, _, _ := e.in.Convert(relayEnv(), d, raw)
					alloc += allocated(func() {
						if err := e.st.Put([]store.Entry{ent}); err != nil {
							b.Fatal(err)
						}
					}, &peak)
				}
				reportCopies(b, alloc, peak, len(raw))
			})
		}
	}
}

// allocated is how many bytes fn allocates on the heap; it also keeps
// *peak at the most heap fn was seen to hold at once beyond what was live
// before it (sampled every 50 µs: what the process's RSS follows).
func allocated(fn func(), peak *uint64) uint64 {
	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(sample)
	base := sample[0].Value.Uint64()
	stop, done := make(chan struct{}), make(chan uint64)
	go func() {
		var top uint64
		t := time.NewTicker(50 * time.Microsecond)
		defer t.Stop()
		for {
			metrics.Read(sample)
			if v := sample[0].Value.Uint64(); v > base && v-base > top {
				top = v - base
			}
			select {
			case <-stop:
				done <- top
				return
			case <-t.C:
			}
		}
	}()
	fn()
	close(stop)
	*peak = max(*peak, <-done)
	runtime.ReadMemStats(&m1)
	return m1.TotalAlloc - m0.TotalAlloc
}

// reportCopies states the bytes allocated per message, and the most held
// at once, in message sizes.
func reportCopies(b *testing.B, alloc, peak uint64, size int) {
	b.ReportMetric(float64(alloc)/float64(b.N)/float64(size), "copies")
	b.ReportMetric(float64(peak)/float64(size), "peak-copies")
	b.ReportMetric(0, "ns/op") // wall time of a GC'd loop says nothing
}
