package smtpd

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/xarfd/xarfd/config"
)

// inflightWait is how long a session waits for room in the DATA budget
// before it gives up with 452 4.3.1. Long enough to ride out a burst
// (other sessions' messages commit in milliseconds to a few seconds),
// short enough that a client is not left hanging: its DATA stalls while
// it waits, well inside any client's timeout.
const inflightWait = 5 * time.Second

// minReserveStep and reserveStep bound how much of the budget a session
// takes at a time while it reads a message whose size it was not told:
// as much as it has read so far, within these. A small message holds
// little of the budget; a 25 MiB one takes the lock a few dozen times.
const (
	minReserveStep = 64 << 10
	reserveStep    = 1 << 20
)

// budget counts the bytes of DATA that all sessions hold in memory, up
// to max. It is safe for concurrent use.
type budget struct {
	max int64

	mu           sync.Mutex
	used         int64
	overReleased int64 // bytes released beyond what was acquired: a bug
	// freed is closed and replaced whenever bytes come back, waking every
	// waiter to try again.
	freed chan struct{}
}

func newBudget(max int64) *budget {
	return &budget{max: max, freed: make(chan struct{})}
}

// acquire takes n bytes, waiting up to wait for them; it reports whether
// it got them. A request larger than the whole budget fails at once.
func (b *budget) acquire(n int64, wait time.Duration) bool {
	if n <= 0 {
		return true
	}
	if n > b.max {
		return false
	}
	var timer *time.Timer
	for {
		b.mu.Lock()
		if b.used+n <= b.max {
			b.used += n
			b.mu.Unlock()
			if timer != nil {
				timer.Stop()
			}
			return true
		}
		freed := b.freed
		b.mu.Unlock()
		if timer == nil {
			if wait <= 0 {
				return false
			}
			timer = time.NewTimer(wait)
		}
		select {
		case <-freed:
		case <-timer.C:
			return false
		}
	}
}

// release gives back n bytes taken by acquire.
func (b *budget) release(n int64) {
	if n <= 0 {
		return
	}
	b.mu.Lock()
	b.used -= n
	if b.used < 0 {
		// A release without its acquire is a bug that would grow the
		// budget; keep the count sane, and the daemon up, and count it
		// for the tests to see.
		b.overReleased += -b.used
		b.used = 0
	}
	close(b.freed)
	b.freed = make(chan struct{})
	b.mu.Unlock()
}

// inUse returns the bytes held now.
func (b *budget) inUse() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

// errors returns the bytes released beyond what was acquired (0 unless
// there is a bug).
func (b *budget) errors() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.overReleased
}

// reservation is one session's share of the budget: what it holds, so
// that whatever path ends the transaction gives back exactly that.
type reservation struct {
	b    *budget
	held int64
}

// grow makes the reservation at least n bytes.
func (r *reservation) grow(n int64, wait time.Duration) bool {
	if n <= r.held {
		return true
	}
	if !r.b.acquire(n-r.held, wait) {
		return false
	}
	r.held = n
	return true
}

// releaseAll gives back everything held; it may be called again.
func (r *reservation) releaseAll() {
	if r == nil || r.b == nil {
		return
	}
	r.b.release(r.held)
	r.held = 0
}

// memorySources are the files InflightBudget reads; tests point them
// elsewhere.
type memorySources struct {
	procCgroup string // /proc/self/cgroup
	cgroupRoot string // /sys/fs/cgroup
	meminfo    string // /proc/meminfo
}

func systemMemory() memorySources {
	return memorySources{
		procCgroup: "/proc/self/cgroup",
		cgroupRoot: "/sys/fs/cgroup",
		meminfo:    "/proc/meminfo",
	}
}

// InflightBudget returns smtp.max_inflight_bytes, or when it is 0 the
// budget derived from memory: the smaller of the cgroup's memory limit
// (cgroup v2 memory.max, or v1 memory.limit_in_bytes) and the host's
// MemAvailable, divided by config.InflightMemoryDivisor, and never below
// config.MinInflightBytes nor below one message of max_message_bytes.
// from says where the figure came from, for the start-up log.
func InflightBudget(cfg *config.Config) (n int64, from string) {
	return inflightBudget(cfg, systemMemory())
}

func inflightBudget(cfg *config.Config, src memorySources) (int64, string) {
	if cfg.SMTP.MaxInflightBytes > 0 {
		return cfg.SMTP.MaxInflightBytes, "smtp.max_inflight_bytes"
	}
	mem, from := availableMemory(src)
	n := mem / config.InflightMemoryDivisor
	if n < config.MinInflightBytes {
		n, from = config.MinInflightBytes, "floor"
	}
	if n < cfg.SMTP.MaxMessageBytes {
		n, from = cfg.SMTP.MaxMessageBytes, "smtp.max_message_bytes"
	}
	return n, from
}

// AvailableMemory is the memory this process may use, as the derived
// DATA budget sees it: the smaller of its cgroup's limit and the host's
// MemAvailable; 0 when neither can be read. from names the source.
func AvailableMemory() (n int64, from string) {
	return availableMemory(systemMemory())
}

// availableMemory is the least of the limits it can read; 0 when it can
// read none.
func availableMemory(src memorySources) (int64, string) {
	var best int64
	var from string
	consider := func(n int64, what string) {
		if n > 0 && (best == 0 || n < best) {
			best, from = n, what
		}
	}
	if n, what, err := cgroupLimit(src); err == nil {
		consider(n, what)
	}
	if n, err := memAvailable(src.meminfo); err == nil {
		consider(n, "MemAvailable")
	}
	if from == "" {
		from = "unknown"
	}
	return best, from
}

// cgroupLimit reads the memory limit of this process's cgroup; 0 when
// it has none.
func cgroupLimit(src memorySources) (int64, string, error) {
	data, err := os.ReadFile(src.procCgroup)
	if err != nil {
		return 0, "", fmt.Errorf("reading %s: %w", src.procCgroup, err)
	}
	for line := range strings.SplitSeq(strings.TrimSpace(string(data)), "\n") {
		// "hierarchy-ID:controllers:path"; v2 is "0::/path".
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		var file string
		switch {
		case parts[0] == "0" && parts[1] == "":
			file = filepath.Join(src.cgroupRoot, parts[2], "memory.max")
		case slices.Contains(strings.Split(parts[1], ","), "memory"):
			file = filepath.Join(src.cgroupRoot, "memory", parts[2], "memory.limit_in_bytes")
		default:
			continue
		}
		b, err := os.ReadFile(file)
		if err != nil {
			continue // a namespace may hide the path; try the next line
		}
		v := strings.TrimSpace(string(b))
		if v == "max" {
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, "", fmt.Errorf("reading %s: %w", file, err)
		}
		// cgroup v1 writes "no limit" as a huge page-rounded number.
		if n <= 0 || n >= 1<<60 {
			continue
		}
		return n, file, nil
	}
	return 0, "", nil
}

// memAvailable reads MemAvailable from a /proc/meminfo file, in bytes.
func memAvailable(path string) (int64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("reading %s: %w", path, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "MemAvailable:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			break
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("reading %s: MemAvailable: %w", path, err)
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("reading %s: no MemAvailable line", path)
}
