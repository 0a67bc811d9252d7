package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/xarfd/xarfd/store"
)

// notifier speaks systemd's service notification protocol (sd_notify(3)):
// one datagram of "KEY=value" lines per state change, sent to the unix
// datagram socket named by $NOTIFY_SOCKET. Written here rather than
// imported because the protocol is this small. A nil *notifier (no
// NOTIFY_SOCKET: not started by systemd with Type=notify) does nothing,
// so callers need no conditionals.
type notifier struct {
	addr *net.UnixAddr
	log  zerolog.Logger
	// watchdog is half of $WATCHDOG_USEC (systemd's advice), 0 = off.
	watchdog time.Duration
}

// newNotifier reads the environment systemd gives a Type=notify service.
// A watchdog meant for another process ($WATCHDOG_PID not ours) is
// ignored, as sd_watchdog_enabled(3) does.
func newNotifier(log zerolog.Logger) *notifier {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil
	}
	if path[0] == '@' { // abstract namespace
		path = "\x00" + path[1:]
	}
	n := &notifier{addr: &net.UnixAddr{Name: path, Net: "unixgram"}, log: log}
	if us, err := strconv.ParseUint(os.Getenv("WATCHDOG_USEC"), 10, 63); err == nil && us > 0 {
		pid := os.Getenv("WATCHDOG_PID")
		if pid == "" || pid == strconv.Itoa(os.Getpid()) {
			n.watchdog = time.Duration(us) * time.Microsecond / 2
		}
	}
	return n
}

// Notify sends one state datagram, such as "READY=1" or
// "STOPPING=1\nSTATUS=draining". A failure is logged, never fatal: the
// daemon serves mail whether or not its supervisor hears about it.
func (n *notifier) Notify(state string) {
	if n == nil {
		return
	}
	if err := n.send(state); err != nil {
		n.log.Warn().Err(err).Str("state", strings.SplitN(state, "\n", 2)[0]).Msg("systemd notification not sent")
	}
}

func (n *notifier) send(state string) error {
	c, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("connecting to NOTIFY_SOCKET: %w", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(state)); err != nil {
		return fmt.Errorf("writing to NOTIFY_SOCKET: %w", err)
	}
	return nil
}

// Reloading and Reloaded bracket a configuration reload (SIGHUP), so
// that `systemctl status` shows it. Reloaded is due after a refused
// reload too: systemd leaves the "reloading" state only on READY=1.
func (n *notifier) Reloading() { n.Notify("RELOADING=1") }
func (n *notifier) Reloaded()  { n.Notify("READY=1") }

// Watchdog sends WATCHDOG=1 every half watchdog interval while healthy
// returns nil, until ctx ends. When healthy keeps failing, the pings
// stop and systemd restarts the service once WatchdogSec passes (with
// Restart=on-failure). Without a watchdog it returns at once.
func (n *notifier) Watchdog(ctx context.Context, healthy func() error) {
	if n == nil || n.watchdog <= 0 {
		return
	}
	t := time.NewTicker(n.watchdog)
	defer t.Stop()
	for {
		if err := healthy(); err != nil {
			n.log.Error().Err(err).Msg("not healthy: withholding the watchdog ping")
		} else {
			n.Notify("WATCHDOG=1")
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// readyState is the READY=1 datagram, sent once the store is open and
// every listener is bound (the kernel queues connections from then on);
// its STATUS shows the addresses in `systemctl status`.
func readyState(smtp []net.Listener, http net.Listener) string {
	var addrs []string
	for _, l := range smtp {
		addrs = append(addrs, "smtp "+l.Addr().String())
	}
	if http != nil {
		addrs = append(addrs, "http "+http.Addr().String())
	}
	return "READY=1\nSTATUS=serving: " + strings.Join(addrs, ", ")
}

// storeHealthy is the watchdog's check: a read transaction on the store
// completes.
func storeHealthy(st *store.Store) func() error {
	return st.Ping
}
