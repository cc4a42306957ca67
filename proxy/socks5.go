package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	socks5 "github.com/things-go/go-socks5"
	"github.com/things-go/go-socks5/bufferpool"
	"github.com/things-go/go-socks5/statute"
)

// SOCKS5 is a SOCKS5 (RFC 1928) server for CONNECT and UDP ASSOCIATE (§7),
// with username/password authentication (RFC 1929) when Options has
// Credentials. BIND is refused (reply 0x07, command not supported).
//
// Domain names in requests are resolved with the Resolver, if one is given
// (the first IPv4 address is dialled, else the first IPv6 one), or else passed to the Dialer as they
// are — a Router decides by name and the tunnel resolves through the VPN's
// DNS, like socks5h; the host's resolver is never used for a name the
// routes send through the VPN.
//
// The greeting, authentication and request must arrive within the
// handshake timeout; connections beyond the Limiter are refused at once
// with "no acceptable methods" (0xFF).
type SOCKS5 struct {
	d      Dialer
	r      Resolver
	opts   Options
	logger *slog.Logger
}

// NewSOCKS5 returns a SOCKS5 server dialing with d and resolving with r
// (nil: names go to d). opts may be nil.
func NewSOCKS5(d Dialer, r Resolver, opts *Options) *SOCKS5 {
	s := &SOCKS5{d: d, r: r}
	if opts != nil {
		s.opts = *opts
	}
	s.logger = s.opts.logger()
	return s
}

// socksRefusal is the method-selection reply "no acceptable methods".
var socksRefusal = []byte{statute.VersionSocks5, statute.MethodNoAcceptable}

// Serve accepts SOCKS5 clients on ln until ctx is cancelled (then it returns
// nil). Accept errors (EMFILE, ...) are retried with back-off, never
// returned. It closes ln, and on return every client connection it accepted
// has been closed.
func (s *SOCKS5) Serve(ctx context.Context, ln net.Listener) error {
	opts := []socks5.Option{
		socks5.WithResolver(deferredResolver{}),
		socks5.WithRule(socks5.NewPermitAll()), // BIND: the library replies 0x07
		socks5.WithConnectHandle(func(_ context.Context, w io.Writer, req *socks5.Request) error {
			return s.connect(ctx, w, req)
		}),
		socks5.WithAssociateHandle(func(_ context.Context, w io.Writer, req *socks5.Request) error {
			return s.associate(ctx, w, req)
		}),
		socks5.WithBufferPool(bufferpool.NewPool(copyBufSize)),
		socks5.WithLogger(socksLogger{s.logger}),
	}
	if c := s.opts.Credentials; c != nil {
		opts = append(opts, socks5.WithCredential(socksCredentials{c, s.opts.Stats}))
	}
	srv := socks5.NewServer(opts...)
	gl := newGuardedListener(ln, s.opts.Limiter, s.opts.Stats, socksRefusal, s.logger)
	hs := s.opts.handshakeTimeout()
	return serveLoop(ctx, gl, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(hs))
		if err := srv.ServeConn(c); err != nil {
			s.logger.Debug("socks5: connection ended", "client", c.RemoteAddr(), "err", err)
		}
	})
}

// serveLoop runs handle for each accepted connection until ctx is done.
// ln is a guardedListener: its Accept fails only once it is closed.
func serveLoop(ctx context.Context, ln net.Listener, handle func(net.Conn)) error {
	var tr connTracker
	var wg sync.WaitGroup
	stop := context.AfterFunc(ctx, func() {
		ln.Close()
		tr.closeAll()
	})
	defer func() {
		stop()
		ln.Close()
		tr.closeAll()
		wg.Wait()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			return nil
		}
		if !tr.add(c) {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer tr.remove(c)
			defer c.Close()
			handle(c)
		}()
	}
}

// deferredResolver leaves names unresolved for connect and associate,
// which resolve (or route by name) themselves.
type deferredResolver struct{}

func (deferredResolver) Resolve(ctx context.Context, _ string) (context.Context, net.IP, error) {
	return ctx, nil, nil
}

type socksCredentials struct {
	c     *Credentials
	stats *Stats
}

func (sc socksCredentials) Valid(user, password, _ string) bool {
	ok := sc.c.Valid(user, password)
	if !ok {
		sc.stats.refuse(RefusedAuth)
	}
	return ok
}

// target returns the "host:port" to dial for a request's destination,
// resolving a name with the Resolver if there is one.
func (s *SOCKS5) target(ctx context.Context, a *statute.AddrSpec) (string, error) {
	port := fmt.Sprint(a.Port)
	if a.FQDN == "" {
		return net.JoinHostPort(a.IP.String(), port), nil
	}
	if s.r == nil {
		return net.JoinHostPort(a.FQDN, port), nil
	}
	lctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	addrs, err := s.r.LookupHost(lctx, a.FQDN)
	if err != nil {
		return "", err
	}
	// IPv4 first; an IPv6 address only comes back when IPv6 is up in the
	// tunnel (netstack.Stack.LookupHost).
	for _, ad := range addrs {
		if ad = ad.Unmap(); ad.Is4() {
			return net.JoinHostPort(ad.String(), port), nil
		}
	}
	for _, ad := range addrs {
		if ad.Is6() {
			return net.JoinHostPort(ad.String(), port), nil
		}
	}
	return "", fmt.Errorf("%w: %s", ErrNoIPv4Address, a.FQDN)
}

func (s *SOCKS5) dial(ctx context.Context, network string, a *statute.AddrSpec) (net.Conn, error) {
	dctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	addr, err := s.target(dctx, a)
	if err != nil {
		return nil, err
	}
	return s.d.DialContext(dctx, network, addr)
}

// replyCode maps a dial error to a SOCKS5 reply (RFC 1928 §6).
func replyCode(err error) uint8 {
	msg := err.Error()
	switch {
	case errors.Is(err, ErrRefusedByRoutes):
		return statute.RepRuleFailure
	case strings.Contains(msg, "refused"):
		return statute.RepConnectionRefused
	case strings.Contains(msg, "network is unreachable"):
		return statute.RepNetworkUnreachable
	}
	return statute.RepHostUnreachable
}

func (s *SOCKS5) connect(ctx context.Context, w io.Writer, req *socks5.Request) error {
	client := w.(net.Conn)
	client.SetDeadline(time.Time{}) // handshake done
	target, err := s.dial(ctx, "tcp", req.RawDestAddr)
	if err != nil {
		s.logger.Debug("socks5: dial failed", "target", req.RawDestAddr.String(), "err", err)
		s.opts.Stats.refuseDial(err)
		if err := socks5.SendReply(w, replyCode(err), nil); err != nil {
			return err
		}
		return fmt.Errorf("connect to %v failed: %w", req.RawDestAddr, err)
	}
	if err := socks5.SendReply(w, statute.RepSuccess, target.LocalAddr()); err != nil {
		target.Close()
		return err
	}
	relay(&bufferedConn{Conn: client, r: req.Reader}, target)
	return nil
}

// bufferedConn reads through r (the handshake's bufio.Reader, which may
// hold bytes the client sent right after its request).
type bufferedConn struct {
	net.Conn
	r io.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) {
	if br, ok := c.r.(*bufio.Reader); ok && br.Buffered() == 0 {
		return c.Conn.Read(p)
	}
	return c.r.Read(p)
}

func (c *bufferedConn) CloseWrite() error {
	if cw, ok := c.Conn.(closeWriter); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

type socksLogger struct{ l *slog.Logger }

func (sl socksLogger) Errorf(format string, args ...any) {
	sl.l.Debug("socks5: " + fmt.Sprintf(format, args...))
}

// unwrapped: the connection itself once the handshake reader is drained.
func (c *bufferedConn) unwrapped() (any, bool) {
	br, ok := c.r.(*bufio.Reader)
	return c.Conn, ok && br.Buffered() == 0
}
