// Package proxy serves local SOCKS5 and HTTP proxies whose outbound
// connections (and, for SOCKS5, name resolution) go through a Dialer and
// Resolver — in this program the user-space network stack inside the VPN.
package proxy

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"
)

// Dialer opens outbound connections (netstack.Stack implements it).
type Dialer interface {
	DialContext(ctx context.Context, network, address string) (net.Conn, error)
}

// Resolver resolves host names (netstack.Stack implements it).
type Resolver interface {
	LookupHost(ctx context.Context, host string) ([]netip.Addr, error)
}

// Sentinel errors.
var (
	ErrNoIPv4Address = errors.New("proxy: name has no IPv4 address (and no IPv6 one usable: IPv6 is not up in the tunnel)")
)

const (
	// dialTimeout bounds connection setup through the tunnel (DNS + TCP
	// handshake); the SYN retry schedule alone would take ~2 minutes.
	dialTimeout = 30 * time.Second
	// copyBufSize: large enough to move a full TCP window's worth per
	// syscall/stack call, small enough for many concurrent connections.
	copyBufSize = 32 << 10
)

var copyBufPool = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

// idleReadSize is the buffer a copier waits in while its source is quiet:
// every held connection has two copiers, so what they hold while idle is
// what 1,000 idle connections cost (issue 9). A read that fills it
// switches to a pooled copyBufSize buffer until the burst is over.
const idleReadSize = 4 << 10

// copyBuffer copies src to dst until EOF. Between two host TCP connections
// (direct routing) the kernel splices with no buffer; from a source that
// writes itself (a connection through the tunnel: netstack's WriteTo
// holds a buffer only while it has data in hand) it lets the source do
// it; otherwise it waits in a small buffer and borrows a large one for
// bursts, so an idle copier holds 4 KiB instead of 32.
func copyBuffer(dst io.Writer, src io.Reader) (int64, error) {
	s := unwrap(src)
	if d, ok := unwrap(dst).(*net.TCPConn); ok {
		if s, ok := s.(*net.TCPConn); ok {
			return io.Copy(d, s)
		}
	}
	if wt, ok := s.(io.WriterTo); ok {
		// Not *net.TCPConn's: to anything but a socket it falls back to
		// io.Copy with a new 32 KiB buffer held for the whole copy.
		if _, host := s.(*net.TCPConn); !host {
			return wt.WriteTo(dst)
		}
	}
	small := make([]byte, idleReadSize)
	var written int64
	for {
		n, err := src.Read(small)
		if n > 0 {
			w, werr := writeAll(dst, small[:n])
			written += w
			if werr != nil {
				return written, werr
			}
		}
		if err == nil && n == len(small) {
			var w int64
			w, err = copyBurst(dst, src)
			written += w
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return written, nil
			}
			return written, err
		}
	}
}

// copyBurst copies with a pooled copyBufSize buffer until a read returns
// less than half of it (the burst is over) or an error (io.EOF included).
func copyBurst(dst io.Writer, src io.Reader) (int64, error) {
	bp := copyBufPool.Get().(*[]byte)
	defer copyBufPool.Put(bp)
	buf := *bp
	var written int64
	for {
		n, err := src.Read(buf)
		if n > 0 {
			w, werr := writeAll(dst, buf[:n])
			written += w
			if werr != nil {
				return written, werr
			}
		}
		if err != nil || n < len(buf)/2 {
			return written, err
		}
	}
}

func writeAll(dst io.Writer, b []byte) (int64, error) {
	n, err := dst.Write(b)
	if err == nil && n != len(b) {
		err = io.ErrShortWrite
	}
	return int64(n), err
}

type closeWriter interface{ CloseWrite() error }

// wrapper is a connection wrapper that can hand out the connection it
// wraps once its own reading or writing adds nothing.
type wrapper interface{ unwrapped() (any, bool) }

func unwrap(v any) any {
	for {
		w, ok := v.(wrapper)
		if !ok {
			return v
		}
		inner, ok := w.unwrapped()
		if !ok {
			return v
		}
		v = inner
	}
}

// relay copies both ways between a and b until both directions are done.
// When one side finishes sending (EOF), the other side's write half is
// closed (CloseWrite, if supported) so the half-close propagates; on an
// error in either direction both connections are closed. Both are closed
// on return.
func relay(a, b net.Conn) {
	var wg sync.WaitGroup
	half := func(dst, src net.Conn) {
		defer wg.Done()
		_, err := copyBuffer(dst, src)
		if cw, ok := dst.(closeWriter); ok && err == nil {
			if cw.CloseWrite() == nil {
				return
			}
		}
		// Error, or no half-close support: tear both down so the other
		// direction does not hang.
		a.Close()
		b.Close()
	}
	wg.Add(2)
	go half(b, a)
	go half(a, b)
	wg.Wait()
	a.Close()
	b.Close()
}

// connTracker remembers live client connections so Serve can close them
// when its context is cancelled.
type connTracker struct {
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

// add registers c; it reports false (and closes c) if the tracker is closed.
func (t *connTracker) add(c net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		c.Close()
		return false
	}
	if t.conns == nil {
		t.conns = make(map[net.Conn]struct{})
	}
	t.conns[c] = struct{}{}
	return true
}

func (t *connTracker) remove(c net.Conn) {
	t.mu.Lock()
	delete(t.conns, c)
	t.mu.Unlock()
}

func (t *connTracker) closeAll() {
	t.mu.Lock()
	t.closed = true
	conns := t.conns
	t.conns = nil
	t.mu.Unlock()
	for c := range conns {
		c.Close()
	}
}

// DefaultHandshakeTimeout bounds a SOCKS5 greeting, authentication and
// request, and an HTTP request header: a client that sends a byte and then
// nothing holds a connection (a file descriptor) no longer than this.
const DefaultHandshakeTimeout = 10 * time.Second

// Options are the settings both proxies share.
type Options struct {
	// Credentials, if set, are required from every client.
	Credentials *Credentials
	// Limiter, if set, caps concurrent client connections; clients
	// beyond it are refused (SOCKS5: no acceptable method, HTTP: 503).
	Limiter *Limiter
	// HandshakeTimeout bounds the handshake or request header
	// (0: DefaultHandshakeTimeout).
	HandshakeTimeout time.Duration
	// PAC, if set, makes the HTTP proxy serve GET /proxy.pac from these
	// routes.
	PAC *Routes
	// Logger (nil: discard).
	Logger *slog.Logger
	// Stats, if set, counts this proxy's connections and refusals (give
	// each proxy its own).
	Stats *Stats
}

func (o *Options) handshakeTimeout() time.Duration {
	if o.HandshakeTimeout > 0 {
		return o.HandshakeTimeout
	}
	return DefaultHandshakeTimeout
}

func (o *Options) logger() *slog.Logger {
	if o.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return o.Logger
}
