package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/emersion/go-smtp"
)

// floodResult is what -flood measured: the replies, the server's memory
// (from /proc/PID/status) and the DATA bytes it held (from its metrics).
type floodResult struct {
	codes        map[int]int // final reply code per session; 0 = no reply (connection lost)
	firstErr     error
	elapsed      time.Duration
	rssBefore    int64 // VmRSS before the flood, bytes
	hwmBefore    int64 // VmHWM before the flood
	hwm          int64 // VmHWM after the flood
	peakRSS      int64 // largest VmRSS sampled during the flood
	peakInflight int64 // largest xarfd_smtp_inflight_bytes sampled; -1 without -metrics
	budget       int64 // xarfd_smtp_max_inflight_bytes; -1 without -metrics
	alive        bool
}

// flood opens c sessions at once, each sending one message msg (with
// SIZE= when declare), and samples the server process pid and its
// metrics URL every 20 ms while they run.
func flood(addr, from, rcpt string, c int, msg []byte, declare bool, pid int, metricsURL string) (*floodResult, error) {
	if pid <= 0 {
		return nil, errors.New("-flood needs -pid of the server")
	}
	res := &floodResult{codes: map[int]int{}, peakInflight: -1, budget: -1}
	var err error
	if res.rssBefore, err = procStatus(pid, "VmRSS"); err != nil {
		return nil, err
	}
	if res.hwmBefore, err = procStatus(pid, "VmHWM"); err != nil {
		return nil, err
	}
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			if n, err := procStatus(pid, "VmRSS"); err == nil && n > res.peakRSS {
				res.peakRSS = n
			}
			if metricsURL != "" {
				if m, err := scrape(metricsURL); err == nil {
					if v, ok := m["xarfd_smtp_inflight_bytes"]; ok && int64(v) > res.peakInflight {
						res.peakInflight = int64(v)
					}
					if v, ok := m["xarfd_smtp_max_inflight_bytes"]; ok {
						res.budget = int64(v)
					}
				}
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < c; i++ {
		wg.Go(func() {
			code, err := sendOneCode(addr, from, rcpt, msg, declare)
			mu.Lock()
			res.codes[code]++
			if code != 250 && code != 452 {
				res.firstErr = cmp(res.firstErr, err)
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	close(stop)
	<-sampled
	res.alive = syscall.Kill(pid, 0) == nil
	if res.alive {
		if res.hwm, err = procStatus(pid, "VmHWM"); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// sendOneCode sends one message on its own connection and returns the
// final reply code (0 when the connection failed without one).
func sendOneCode(addr, from, rcpt string, msg []byte, declare bool) (int, error) {
	cl, err := smtp.Dial(addr)
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	if err := cl.Hello("flood.example"); err != nil {
		return code(err), err
	}
	var opts *smtp.MailOptions
	if declare {
		opts = &smtp.MailOptions{Size: int64(len(msg))}
	}
	if err := cl.Mail(from, opts); err != nil {
		return code(err), err
	}
	if err := cl.Rcpt(rcpt, nil); err != nil {
		return code(err), err
	}
	w, err := cl.Data()
	if err != nil {
		return code(err), err
	}
	if _, err := w.Write(msg); err != nil {
		// The server may answer before it has read everything; the
		// reply is what Close returns.
		w.Close()
		return code(err), err
	}
	if err := w.Close(); err != nil {
		return code(err), err
	}
	cl.Quit()
	return 250, nil
}

func code(err error) int {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se.Code
	}
	return 0
}

// procStatus reads one "Vm…: N kB" field of /proc/PID/status, in bytes.
func procStatus(pid int, field string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), field+":")
		if !ok {
			continue
		}
		fs := strings.Fields(rest)
		if len(fs) < 1 {
			break
		}
		kb, err := strconv.ParseInt(fs[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/status %s: %w", pid, field, err)
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("/proc/%d/status has no %s", pid, field)
}

// scrape reads the unlabelled samples of a Prometheus text page.
func scrape(url string) (map[string]float64, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	m := map[string]float64{}
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 8<<20))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		name, val, ok := strings.Cut(line, " ")
		if !ok || strings.Contains(name, "{") {
			continue
		}
		if v, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil {
			m[name] = v
		}
	}
	return m, sc.Err()
}

func (r *floodResult) print(w io.Writer, label string, c, size int) {
	mb := func(n int64) string {
		if n < 0 {
			return "n/a"
		}
		return fmt.Sprintf("%.0fMB", float64(n)/(1<<20))
	}
	if label != "" {
		fmt.Fprintf(w, "%-8s ", label)
	}
	var codes []string
	for _, k := range []int{250, 452, 421, 451, 552, 0} {
		if n := r.codes[k]; n > 0 {
			codes = append(codes, fmt.Sprintf("%d:%d", k, n))
		}
	}
	for k, n := range r.codes {
		if k != 250 && k != 452 && k != 421 && k != 451 && k != 552 && k != 0 {
			codes = append(codes, fmt.Sprintf("%d:%d", k, n))
		}
	}
	ratio := "n/a"
	if r.peakInflight > 0 {
		ratio = fmt.Sprintf("%.2f", float64(r.hwm-r.rssBefore)/float64(r.peakInflight))
	}
	fmt.Fprintf(w, "c=%d size=%s offered=%s in %.1fs  replies %s  alive=%v  rss_before=%s hwm_before=%s peak_rss=%s hwm=%s  budget=%s peak_inflight=%s  (hwm-rss_before)/peak_inflight=%s\n",
		c, mb(int64(size)), mb(int64(c)*int64(size)), r.elapsed.Seconds(), strings.Join(codes, " "), r.alive,
		mb(r.rssBefore), mb(r.hwmBefore), mb(r.peakRSS), mb(r.hwm), mb(r.budget), mb(r.peakInflight), ratio)
}
