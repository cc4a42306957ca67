package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"

	socks5 "github.com/things-go/go-socks5"
	"github.com/things-go/go-socks5/bufferpool"
)

// SOCKS5 is a SOCKS5 (RFC 1928) server supporting CONNECT only, without
// authentication (it is meant to listen on loopback). Domain names in
// requests are resolved with the Resolver — i.e. through the tunnel's DNS,
// like socks5h — never with the host's resolver; connections are made with
// the Dialer. BIND and UDP ASSOCIATE are refused (reply 0x02, "not allowed
// by ruleset"): the library's ASSOCIATE relay would listen on host UDP
// sockets and is not needed by browsers or curl.
type SOCKS5 struct {
	d      Dialer
	r      Resolver
	logger *slog.Logger
}

// NewSOCKS5 returns a SOCKS5 server dialing with d and resolving with r.
// A nil logger discards logs.
func NewSOCKS5(d Dialer, r Resolver, logger *slog.Logger) *SOCKS5 {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &SOCKS5{d: d, r: r, logger: logger}
}

// Serve accepts SOCKS5 clients on ln until ctx is cancelled (then it returns
// nil) or ln fails. It closes ln, and on return every client connection it
// accepted has been closed.
func (s *SOCKS5) Serve(ctx context.Context, ln net.Listener) error {
	srv := socks5.NewServer(
		socks5.WithResolver(socksResolver{r: s.r, base: ctx}),
		socks5.WithDial(func(_ context.Context, network, addr string) (net.Conn, error) {
			// The library passes context.Background(); bound the dial
			// by Serve's context and our own timeout instead.
			dctx, cancel := context.WithTimeout(ctx, dialTimeout)
			defer cancel()
			c, err := s.d.DialContext(dctx, network, addr)
			if err != nil {
				s.logger.Debug("socks5: dial failed", "target", addr, "err", err)
			}
			return c, err
		}),
		socks5.WithRule(&socks5.PermitCommand{EnableConnect: true}),
		socks5.WithBufferPool(bufferpool.NewPool(copyBufSize)),
		socks5.WithLogger(socksLogger{s.logger}),
	)
	return serveLoop(ctx, ln, s.logger, "socks5", func(c net.Conn) {
		if err := srv.ServeConn(c); err != nil {
			s.logger.Debug("socks5: connection ended", "client", c.RemoteAddr(), "err", err)
		}
	})
}

// serveLoop runs handle for each accepted connection until ctx is done.
func serveLoop(ctx context.Context, ln net.Listener, logger *slog.Logger, name string, handle func(net.Conn)) error {
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
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("%s: accept: %w", name, err)
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

// socksResolver adapts Resolver to the library's NameResolver, returning
// the first IPv4 address (the stack has no IPv6).
type socksResolver struct {
	r    Resolver
	base context.Context
}

func (sr socksResolver) Resolve(ctx context.Context, name string) (context.Context, net.IP, error) {
	lctx, cancel := context.WithTimeout(sr.base, dialTimeout)
	defer cancel()
	addrs, err := sr.r.LookupHost(lctx, name)
	if err != nil {
		return ctx, nil, err
	}
	for _, a := range addrs {
		if a = a.Unmap(); a.Is4() {
			return ctx, net.IP(a.AsSlice()), nil
		}
	}
	return ctx, nil, fmt.Errorf("%w: %s", ErrNoIPv4Address, name)
}

type socksLogger struct{ l *slog.Logger }

func (sl socksLogger) Errorf(format string, args ...any) {
	sl.l.Debug("socks5: " + fmt.Sprintf(format, args...))
}
