package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/l2tpproxy/l2tpproxy/proxy"
	"github.com/l2tpproxy/l2tpproxy/tunnel"
)

// Port forwards, like ssh's:
//
//	-L [BIND:]PORT:HOST:HOSTPORT[/udp]  listen on BIND:PORT here (BIND defaults to
//	                                    127.0.0.1); each connection goes through
//	                                    the tunnel to HOST:HOSTPORT
//	-R PORT:HOST:HOSTPORT[/udp]         listen on PORT of our VPN address, inside the
//	                                    user-space stack; each connection goes to
//	                                    HOST:HOSTPORT from this host
//
// A -L listener beyond loopback is a raw port into the VPN that no proxy
// credentials protect, so it needs --insecure-open-proxy whatever
// --proxy-user says. -L listens before the tunnel connects and keeps its
// listener across reconnects: a connection made while the tunnel is down
// waits for it (--connect-wait) like a proxy connection. -R listens on each
// new tunnel's stack as it comes up.

// forwardFlags are the flags of the commands that serve forwards.
func forwardFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringSliceFlag{Name: "local-forward", Aliases: []string{"L"}, Usage: "listen here and forward through the VPN, `SPEC` [BIND:]PORT:HOST:HOSTPORT[/udp] (BIND 127.0.0.1 unless given; repeatable)", EnvVars: env("L2TPPROXY_LOCAL_FORWARD")},
		&cli.StringSliceFlag{Name: "remote-forward", Aliases: []string{"R"}, Usage: "listen on our VPN address and forward to a service reachable from this host, `SPEC` PORT:HOST:HOSTPORT[/udp] (repeatable)", EnvVars: env("L2TPPROXY_REMOTE_FORWARD")},
	}
}

// forward is one -L or -R.
type forward struct {
	Remote   bool // -R
	UDP      bool
	Bind     string // -L only: the local listening host
	Port     uint16 // the listening port
	Host     string // the destination
	HostPort uint16
}

func (f forward) String() string {
	s := net.JoinHostPort(f.Host, strconv.Itoa(int(f.HostPort)))
	if f.Remote {
		s = fmt.Sprintf("-R %d:%s", f.Port, s)
	} else {
		s = fmt.Sprintf("-L %s:%s", net.JoinHostPort(f.Bind, strconv.Itoa(int(f.Port))), s)
	}
	if f.UDP {
		s += "/udp"
	}
	return s
}

func (f forward) network() string {
	if f.UDP {
		return "udp"
	}
	return "tcp"
}

func (f forward) target() string { return net.JoinHostPort(f.Host, strconv.Itoa(int(f.HostPort))) }

var errBadForward = errors.New("bad port forward")

// forwardsFrom parses the -L and -R flags (each repeatable, or a comma or
// space separated list, as the environment variables give them).
func forwardsFrom(cx *cli.Context) ([]forward, error) {
	var out []forward
	for _, spec := range splitForwardList(cx.StringSlice("local-forward")) {
		f, err := parseForward(spec, false)
		if err != nil {
			return nil, configError("%v", err)
		}
		out = append(out, f)
	}
	for _, spec := range splitForwardList(cx.StringSlice("remote-forward")) {
		f, err := parseForward(spec, true)
		if err != nil {
			return nil, configError("%v", err)
		}
		out = append(out, f)
	}
	return out, nil
}

func splitForwardList(vs []string) []string {
	var out []string
	for _, v := range vs {
		out = append(out, strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' })...)
	}
	return out
}

// parseForward parses one -L (remote false) or -R specification.
func parseForward(spec string, remote bool) (forward, error) {
	flag := "-L"
	if remote {
		flag = "-R"
	}
	bad := func(why string) (forward, error) {
		return forward{}, fmt.Errorf("%w: %s %q: %s", errBadForward, flag, spec, why)
	}
	f := forward{Remote: remote}
	s := spec
	if rest, ok := strings.CutSuffix(s, "/udp"); ok {
		f.UDP, s = true, rest
	} else {
		s = strings.TrimSuffix(s, "/tcp")
	}
	fields, ok := splitColons(s)
	if !ok {
		return bad("unbalanced [ ]")
	}
	switch {
	case !remote && len(fields) == 3:
		f.Bind = "127.0.0.1"
	case !remote && len(fields) == 4:
		f.Bind, fields = fields[0], fields[1:]
		if f.Bind == "" || f.Bind == "*" {
			f.Bind = "0.0.0.0"
		}
	case remote && len(fields) == 3:
	case remote:
		return bad("want PORT:HOST:HOSTPORT (the listening address is always our VPN address)")
	default:
		return bad("want [BIND:]PORT:HOST:HOSTPORT")
	}
	port, err := strconv.ParseUint(fields[0], 10, 16)
	if err != nil || port == 0 && remote {
		return bad(fmt.Sprintf("%q is not a port", fields[0]))
	}
	hp, err := strconv.ParseUint(fields[2], 10, 16)
	if err != nil || hp == 0 {
		return bad(fmt.Sprintf("%q is not a port", fields[2]))
	}
	if fields[1] == "" {
		return bad("no HOST")
	}
	f.Port, f.Host, f.HostPort = uint16(port), fields[1], uint16(hp)
	return f, nil
}

// splitColons splits s at the colons outside [ ] and strips the brackets.
func splitColons(s string) ([]string, bool) {
	var out []string
	depth, start := 0, 0
	for i, c := range s {
		switch c {
		case '[':
			depth++
		case ']':
			depth--
		case ':':
			if depth == 0 {
				out = append(out, s[start:i])
				start = i + 1
			}
		}
		if depth < 0 || depth > 1 {
			return nil, false
		}
	}
	if depth != 0 {
		return nil, false
	}
	out = append(out, s[start:])
	for i, f := range out {
		out[i] = strings.TrimSuffix(strings.TrimPrefix(f, "["), "]")
	}
	return out, true
}

// checkForwardBind applies the listeners' rule to a -L address without
// listening: beyond loopback only with --insecure-open-proxy.
func checkForwardBind(f forward, ps proxySettings) error {
	if f.Remote || ps.InsecureOpen || isLoopbackHost(f.Bind) {
		return nil
	}
	return configError("%s listens on %s, beyond loopback: a forwarded port has no proxy credentials to protect it, so this needs --insecure-open-proxy", f, f.Bind)
}

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(h)
	return err == nil && a.IsLoopback()
}

// forwarder runs the forwards of one serve: the -L listeners for its whole
// life, the -R listeners on each tunnel.
type forwarder struct {
	log    *slog.Logger
	remote []forward
	lns    []net.Listener   // -L TCP
	lnFwd  []forward        // their forwards
	pcs    []net.PacketConn // -L UDP
	pcFwd  []forward
}

// listenForwards opens the -L listeners (a busy port or a non-loopback bind
// without --insecure-open-proxy is a configuration error, found before the
// tunnel connects).
func listenForwards(fs []forward, ps proxySettings, log *slog.Logger) (*forwarder, error) {
	fw := &forwarder{log: log}
	for _, f := range fs {
		if f.Remote {
			fw.remote = append(fw.remote, f)
			continue
		}
		if err := checkForwardBind(f, ps); err != nil {
			fw.Close()
			return nil, err
		}
		addr := net.JoinHostPort(f.Bind, strconv.Itoa(int(f.Port)))
		if f.UDP {
			pc, err := net.ListenPacket("udp", addr)
			if err != nil {
				fw.Close()
				return nil, configError("cannot listen for %s: %v", f, err)
			}
			fw.pcs, fw.pcFwd = append(fw.pcs, pc), append(fw.pcFwd, f)
		} else {
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				fw.Close()
				return nil, configError("cannot listen for %s: %v", f, err)
			}
			fw.lns, fw.lnFwd = append(fw.lns, ln), append(fw.lnFwd, f)
		}
		if !isLoopbackHost(f.Bind) {
			log.Warn("INSECURE: a port forward listens beyond loopback (--insecure-open-proxy); anyone who reaches it reaches the forward's target through your VPN", "forward", f.String())
		}
	}
	return fw, nil
}

// serveLocal starts the -L relays: each connection is dialled through d
// (the current tunnel, which waits while it reconnects).
func (fw *forwarder) serveLocal(ctx context.Context, d proxy.Dialer) {
	for i, ln := range fw.lns {
		f := fw.lnFwd[i]
		fw.log.Info("port forward listening", "forward", f.String(), "addr", ln.Addr().String())
		go serveTCPForward(ctx, ln, func(ctx context.Context) (net.Conn, error) {
			return d.DialContext(ctx, "tcp", f.target())
		}, fw.log.With("forward", f.String()))
	}
	for i, pc := range fw.pcs {
		f := fw.pcFwd[i]
		fw.log.Info("port forward listening", "forward", f.String(), "addr", pc.LocalAddr().String())
		go serveUDPForward(ctx, pc, func(ctx context.Context) (net.Conn, error) {
			return d.DialContext(ctx, "udp", f.target())
		}, fw.log.With("forward", f.String()))
	}
}

// tunnelUp starts the -R listeners on c's stack at its VPN address; they
// end with the tunnel or ctx.
func (fw *forwarder) tunnelUp(ctx context.Context, c *tunnel.Client) {
	if len(fw.remote) == 0 {
		return
	}
	st, addr := c.Stack(), c.Info().Address
	// The -R listeners live as long as this tunnel.
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-ctx.Done():
		case <-c.Done():
		}
		cancel()
	}()
	var dialer net.Dialer
	for _, f := range fw.remote {
		ap := netip.AddrPortFrom(addr, f.Port)
		dial := func(ctx context.Context) (net.Conn, error) {
			ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			return dialer.DialContext(ctx, f.network(), f.target())
		}
		log := fw.log.With("forward", f.String())
		if f.UDP {
			pc, err := st.ListenUDP(ap)
			if err != nil {
				log.Error("cannot listen for a remote forward on the VPN address", "err", err.Error())
				continue
			}
			go serveUDPForward(ctx, pc, dial, log) // closes pc as ctx ends
		} else {
			ln, err := st.ListenTCP(ap)
			if err != nil {
				log.Error("cannot listen for a remote forward on the VPN address", "err", err.Error())
				continue
			}
			go serveTCPForward(ctx, ln, dial, log) // closes ln as ctx ends
		}
		log.Info("remote port forward listening", "addr", ap.String())
	}
}

// Close closes the -L listeners.
func (fw *forwarder) Close() {
	for _, ln := range fw.lns {
		ln.Close()
	}
	for _, pc := range fw.pcs {
		pc.Close()
	}
}

// serveTCPForward accepts until ln is closed or ctx ends; each connection is
// relayed to what dial returns. Other accept errors (EMFILE: out of file
// descriptors) are waited out, as the proxies do.
func serveTCPForward(ctx context.Context, ln net.Listener, dial func(context.Context) (net.Conn, error), log *slog.Logger) {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	for {
		c, err := ln.Accept()
		if err != nil {
			if !backOff(ctx, err, log) {
				return
			}
			continue
		}
		go func() {
			out, err := dial(ctx)
			if err != nil {
				log.Warn("port forward: cannot reach the target", "client", c.RemoteAddr().String(), "err", err.Error())
				c.Close()
				return
			}
			stop := context.AfterFunc(ctx, func() { c.Close(); out.Close() })
			defer stop()
			relayConns(c, out)
		}()
	}
}

// backOff decides after an accept or read error: false if the listener is
// closed or ctx ended (stop), else it waits a moment and says go on.
func backOff(ctx context.Context, err error, log *slog.Logger) bool {
	if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
		return false
	}
	log.Warn("port forward: accept failed, retrying", "err", err.Error())
	t := time.NewTimer(100 * time.Millisecond)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// relayConns copies both ways; an end that finishes sending half-closes
// the other, and both are closed when both directions are done.
func relayConns(a, b net.Conn) {
	var wg sync.WaitGroup
	half := func(dst, src net.Conn) {
		defer wg.Done()
		io.Copy(dst, src)
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		} else {
			dst.Close()
		}
	}
	wg.Add(2)
	go half(a, b)
	go half(b, a)
	wg.Wait()
	a.Close()
	b.Close()
}

// UDP forward limits: a client's flow ends after udpIdle without a
// datagram either way; at most udpMaxFlows at once (more are dropped).
const (
	udpIdle     = 2 * time.Minute
	udpMaxFlows = 256
	udpMaxSize  = 65535
)

// serveUDPForward relays datagrams from each source address of pc to a flow
// of its own (what dial returns), and the flow's replies back to it.
func serveUDPForward(ctx context.Context, pc net.PacketConn, dial func(context.Context) (net.Conn, error), log *slog.Logger) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { pc.Close() })
	defer stop()
	type flow struct{ in chan []byte }
	var mu sync.Mutex
	flows := map[string]*flow{}
	buf := make([]byte, udpMaxSize)
	for {
		n, src, err := pc.ReadFrom(buf)
		if err != nil {
			if !backOff(ctx, err, log) {
				return
			}
			continue
		}
		dg := append([]byte(nil), buf[:n]...)
		key := src.String()
		mu.Lock()
		fl := flows[key]
		if fl == nil {
			if len(flows) >= udpMaxFlows {
				mu.Unlock()
				continue
			}
			fl = &flow{in: make(chan []byte, 64)}
			flows[key] = fl
			go func() {
				defer func() { mu.Lock(); delete(flows, key); mu.Unlock() }()
				runUDPFlow(ctx, pc, src, fl.in, dial, log)
			}()
		}
		mu.Unlock()
		select {
		case fl.in <- dg:
		default: // the flow is behind (still dialling): drop, as a network would
		}
	}
}

// runUDPFlow is one source's flow: it owns the upstream socket. When that
// socket ends (its tunnel went down) the flow dials again, which for -L
// waits for the next tunnel, so a client's flow survives a reconnect.
func runUDPFlow(ctx context.Context, pc net.PacketConn, src net.Addr, in <-chan []byte, dial func(context.Context) (net.Conn, error), log *slog.Logger) {
	active := make(chan struct{}, 1)
	open := func() (net.Conn, <-chan struct{}, error) {
		up, err := dial(ctx)
		if err != nil {
			log.Warn("port forward: cannot reach the target", "client", src.String(), "err", err.Error())
			return nil, nil, err
		}
		dead := make(chan struct{})
		go func() {
			defer close(dead)
			b := make([]byte, udpMaxSize)
			for {
				n, err := up.Read(b)
				if err != nil {
					return
				}
				if _, err := pc.WriteTo(b[:n], src); err != nil {
					return
				}
				select {
				case active <- struct{}{}:
				default:
				}
			}
		}()
		return up, dead, nil
	}
	up, dead, err := open()
	if err != nil {
		return
	}
	defer func() { up.Close() }()
	idle := time.NewTimer(udpIdle)
	defer idle.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-idle.C:
			return
		case <-active:
		case <-dead:
			up.Close()
			if up, dead, err = open(); err != nil {
				up = nopConn{}
				return
			}
		case dg := <-in:
			if _, err := up.Write(dg); err != nil {
				up.Close()
				if up, dead, err = open(); err != nil {
					up = nopConn{}
					return
				}
				up.Write(dg)
			}
		}
		idle.Reset(udpIdle)
	}
}

// nopConn stands for a flow's socket that could not be opened again, so
// the deferred Close has something to close.
type nopConn struct{ net.Conn }

func (nopConn) Close() error { return nil }
