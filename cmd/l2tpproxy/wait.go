package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/l2tpproxy/l2tpproxy/netstack"
	"github.com/l2tpproxy/l2tpproxy/proxy"
	"github.com/l2tpproxy/l2tpproxy/tunnel"
)

// defaultConnectWait is how long a new proxy connection waits for a tunnel
// that is reconnecting: longer than a typical reconnect (a server restart
// is 5-10 s), shorter than the proxies' own 30 s dial timeout.
const defaultConnectWait = 15 * time.Second

// waitFlags are the flags of the commands that serve the proxies.
func waitFlags() []cli.Flag {
	return []cli.Flag{
		&cli.DurationFlag{Name: "connect-wait", Value: defaultConnectWait,
			Usage:   "while the tunnel reconnects, a new proxy connection waits this long for it before it fails (0: fail at once)",
			EnvVars: env("L2TPPROXY_CONNECT_WAIT")},
	}
}

func connectWait(cx *cli.Context) (time.Duration, error) {
	d := cx.Duration("connect-wait")
	if d < 0 {
		return 0, configError("--connect-wait %s is negative", d)
	}
	return d, nil
}

// tunnelDialer is what the proxies need from a tunnel (*tunnel.Client).
type tunnelDialer interface {
	proxy.Dialer
	proxy.Resolver
	// Done is closed when the tunnel has ended.
	Done() <-chan struct{}
}

// currentTunnel is what the proxies dial through: the tunnel that is up now.
// While it is down (serve reconnects), a new connection waits up to wait for
// the next tunnel and goes through it, or fails with the reason the tunnel
// is down: the last reconnect attempt's error, or what ended the tunnel if
// no attempt has failed yet. Connections made through a tunnel that went
// down fail with it, at once.
type currentTunnel struct {
	wait time.Duration

	mu     sync.Mutex
	c      tunnelDialer  // nil while down
	up     chan struct{} // closed when the next tunnel is set; nil while up
	reason error         // why it is down
	since  time.Time     // when it went down
}

func newCurrentTunnel(wait time.Duration) *currentTunnel {
	return &currentTunnel{wait: wait, up: make(chan struct{}), reason: errors.New("not connected yet"), since: time.Now()}
}

// errTunnelDown is the class of every error of a connection that found the
// tunnel down.
var errTunnelDown = errors.New("the VPN tunnel is down (reconnecting)")

// setUp makes c the tunnel new connections go through and releases the
// connections waiting for one.
func (t *currentTunnel) setUp(c tunnelDialer) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.c = c
	if t.up != nil {
		close(t.up)
		t.up = nil
	}
}

// setDown records that the tunnel is down (or still down: another reconnect
// attempt failed) and why.
func (t *currentTunnel) setDown(reason error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.c != nil || t.up == nil {
		t.c = nil
		t.up = make(chan struct{})
		t.since = time.Now()
	}
	if reason != nil {
		t.reason = reason
	}
}

// get returns the tunnel that is up, waiting for one while it is down.
func (t *currentTunnel) get(ctx context.Context) (tunnelDialer, error) {
	c, up := t.current()
	if c != nil {
		return c, nil
	}
	var expired <-chan time.Time
	if t.wait > 0 {
		timer := time.NewTimer(t.wait)
		defer timer.Stop()
		expired = timer.C
	} else {
		closed := make(chan time.Time)
		close(closed)
		expired = closed
	}
	for {
		select {
		case <-up:
			if c, up = t.current(); c != nil {
				return c, nil
			}
			// It went down again before we got it: keep waiting.
		case <-expired:
			return nil, t.downError(t.wait)
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %w", context.Cause(ctx), t.downError(0))
		}
	}
}

// setEnded records that c is going down, if it is still the current
// tunnel; serve records why when it notices.
func (t *currentTunnel) setEnded(c tunnelDialer) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.c == c {
		t.endedLocked()
	}
}

// endedLocked marks the current tunnel down; t.mu is held.
func (t *currentTunnel) endedLocked() {
	t.c = nil
	t.up = make(chan struct{})
	t.since = time.Now()
}

// current returns the tunnel that is up, or nil and a channel closed when
// the next one is. A tunnel that has ended counts as down even before serve
// notices (and records why), so no dial goes into its closed stack.
func (t *currentTunnel) current() (tunnelDialer, <-chan struct{}) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.c != nil {
		select {
		case <-t.c.Done():
			t.endedLocked()
		default:
		}
	}
	return t.c, t.up
}

func (t *currentTunnel) downError(waited time.Duration) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	down := time.Since(t.since).Round(100 * time.Millisecond)
	if waited > 0 {
		return fmt.Errorf("%w for %s, waited %s; last error: %w", errTunnelDown, down, waited, t.reason)
	}
	return fmt.Errorf("%w for %s; last error: %w", errTunnelDown, down, t.reason)
}

func (t *currentTunnel) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	// A tunnel that is going down closes its stack before it reports that
	// it ended: a dial in that moment finds the stack closed. That tunnel
	// is down, so the connection waits for the next one like any other.
	for range 3 {
		c, err := t.get(ctx)
		if err != nil {
			return nil, err
		}
		conn, err := c.DialContext(ctx, network, address)
		if !errors.Is(err, netstack.ErrClosed) {
			return conn, err
		}
		t.setEnded(c)
	}
	return nil, t.downError(0)
}

func (t *currentTunnel) LookupHost(ctx context.Context, host string) ([]netip.Addr, error) {
	for range 3 {
		c, err := t.get(ctx)
		if err != nil {
			return nil, err
		}
		addrs, err := c.LookupHost(ctx, host)
		if !errors.Is(err, netstack.ErrClosed) {
			return addrs, err
		}
		t.setEnded(c)
	}
	return nil, t.downError(0)
}

// reconnect retries with exponential backoff (1 s doubling to 30 s) until
// it connects, ctx ends, or the server rejects our credentials. Each failed
// attempt becomes cur's reason, which waiting connections report.
func reconnect(ctx context.Context, cfg tunnel.Config, log *slog.Logger, cur *currentTunnel) (*tunnel.Client, error) {
	wait := time.Second
	for {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
		c, err := dialTunnel(ctx, cfg, log)
		if err == nil {
			return c, nil
		}
		if !retryable(err) || ctx.Err() != nil {
			return nil, err
		}
		cur.setDown(err)
		// At most 4 s between attempts: an attempt against a silent
		// server already takes ReplyTimeout (8 s, MM1 sent at 0, 1, 3
		// and 7 s), so a server that comes back hears an MM1 within
		// about 5 s and we serve again soon after (issue 8: within 10 s).
		// That is four small datagrams every 12 s: no burden on a server.
		wait = min(2*wait, 4*time.Second)
		log.Warn("reconnect failed", "err", err.Error(), "retry_in", wait.String())
	}
}
