package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/l2tpproxy/l2tpproxy/proxy"
	"github.com/l2tpproxy/l2tpproxy/tunnel"
)

// Several VPN servers in one process: the configuration file's tunnels
// list, each entry with its own server, credentials and routes/domains:
//
//	tunnels:
//	  - name: office
//	    server: vpn.office.example
//	    psk: $OFFICE_PSK
//	    route: [10.1.0.0/16]
//	    domain: [corp.example]
//	  - name: lab
//	    server: 203.0.113.7
//	    route: [10.2.0.0/16]
//
// A connection goes through the first tunnel whose routes or domains take
// its destination, in the list's order; the rest follows --others (direct
// or refuse). The PAC file sends every tunnel's destinations to the proxy.
// A setting an entry does not give is the top-level one (file, environment
// or flag: user, ppp-auth, pfs, ...), except server, route and domain,
// which each entry names itself, and the other half of a secret pair it
// gives (psk or psk-file, password or password-file). Each tunnel connects
// at start (all must come up) and reconnects on its own.

// tunnelFlagsByName are the settings one entry of the configuration file's
// tunnels list may have: the connection flags, its routes and domains, and
// a name for the logs.
func tunnelFlagsByName() map[string]cli.Flag {
	m := map[string]cli.Flag{}
	for _, f := range connectionFlags() {
		m[flagName(f)] = f
	}
	for _, f := range listenerFlags() {
		if n := flagName(f); n == "route" || n == "domain" {
			m[n] = f
		}
	}
	m["name"] = &cli.StringFlag{Name: "name"}
	return m
}

// tunnelSpec is one tunnel of the list.
type tunnelSpec struct {
	Name   string
	Config tunnel.Config
	Routes *proxy.Routes // what goes through it
}

// entryValues are one entry's settings, falling back to the top level's.
type entryValues struct {
	own    map[any]any
	parent *cli.Context
}

// notInherited are the settings an entry never takes from the top level.
var notInherited = map[string]bool{"server": true, "route": true, "domain": true, "name": true}

// secretPair is the other flag of a secret's flag/file pair.
var secretPair = map[string]string{"psk": "psk-file", "psk-file": "psk", "password": "password-file", "password-file": "password",
	"p12-password": "p12-password-file", "p12-password-file": "p12-password"}

func (e entryValues) inherits(name string) bool {
	if notInherited[name] {
		return false
	}
	if other, ok := secretPair[name]; ok {
		if _, given := e.own[other]; given {
			return false
		}
	}
	return true
}

func (e entryValues) String(name string) string {
	if v, ok := e.own[name]; ok {
		s, _ := v.(string)
		return s
	}
	if !e.inherits(name) {
		return ""
	}
	return e.parent.String(name)
}

func (e entryValues) Uint(name string) uint {
	if v, ok := e.own[name]; ok {
		if n, ok := v.(int); ok && n >= 0 {
			return uint(n)
		}
		return 0 // checked by tunnelsFrom
	}
	return e.parent.Uint(name)
}

func (e entryValues) Duration(name string) time.Duration {
	if v, ok := e.own[name]; ok {
		s, _ := v.(string)
		d, _ := time.ParseDuration(s) // checked by tunnelsFrom
		return d
	}
	return e.parent.Duration(name)
}

func (e entryValues) list(name string) []string {
	l, _ := e.own[name].([]any)
	var out []string
	for _, v := range l {
		out = append(out, v.(string))
	}
	return splitList(out)
}

// tunnelsFrom reads the configuration file's tunnels list (nil without
// one). With it, the top-level server, route and domain are errors: each
// tunnel names its own.
func tunnelsFrom(cx *cli.Context, log *slog.Logger) ([]tunnelSpec, error) {
	entries, err := loadedTunnels(cx, cx.Command.Flags)
	if err != nil || len(entries) == 0 {
		return nil, err
	}
	for _, n := range []string{"server", "route", "domain"} {
		if cx.IsSet(n) {
			return nil, configError("with a tunnels list, give %s in each tunnel, not at the top level (or in the environment)", n)
		}
	}
	var specs []tunnelSpec
	seen := map[string]bool{}
	for i, own := range entries {
		e := entryValues{own: own, parent: cx}
		name := e.String("name")
		if name == "" {
			name = fmt.Sprintf("tunnel%d", i+1)
		}
		if seen[name] {
			return nil, configError("tunnels: two are named %q", name)
		}
		seen[name] = true
		where := fmt.Sprintf("tunnel %q", name)
		if v, ok := own["natt-port"]; ok {
			if n, ok := v.(int); !ok || n <= 0 || n > 65535 {
				return nil, configError("%s: natt-port %v is not a UDP port", where, v)
			}
		}
		if v, ok := own["connect-timeout"]; ok {
			s, _ := v.(string)
			if d, err := time.ParseDuration(s); err != nil || d <= 0 {
				return nil, configError("%s: connect-timeout %v is not a duration (like 30s)", where, v)
			}
		}
		tlog := log.With("tunnel", name)
		cfg, err := tunnelConfig(e, tlog)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		if err := cfg.Validate(); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		routes, err := proxy.ParseRoutes(e.list("route"), e.list("domain"), "refuse")
		if err != nil {
			return nil, configError("%s: %v", where, err)
		}
		if routes.All() {
			return nil, configError("%s has no route or domain: each tunnel of the list says what goes through it (route: [0.0.0.0/0] for everything else)", where)
		}
		specs = append(specs, tunnelSpec{Name: name, Config: cfg, Routes: routes})
	}
	return specs, nil
}

// unionRoutes is everything any tunnel takes (for the PAC file and the
// tunnel-or-not decision), the others going others.
func unionRoutes(specs []tunnelSpec, others proxy.Via) *proxy.Routes {
	u := &proxy.Routes{Others: others}
	for _, s := range specs {
		u.Nets = append(u.Nets, s.Routes.Nets...)
		u.Domains = append(u.Domains, s.Routes.Domains...)
	}
	return u
}

// tunnelPicker dials through the tunnel that takes the destination: the
// first whose domains take a name, or whose routes take an address.
// proxy.Router gives it only destinations the union of the routes takes,
// names outside every domain already resolved to their address.
type tunnelPicker struct {
	names  []string
	routes []*proxy.Routes
	curs   []*currentTunnel
}

func (p *tunnelPicker) pick(host string) (int, bool) {
	if a, err := netip.ParseAddr(host); err == nil {
		for i, r := range p.routes {
			if r.ByAddr(a) == proxy.ViaTunnel {
				return i, true
			}
		}
		return 0, false
	}
	for i, r := range p.routes {
		if r.InDomains(host) {
			return i, true
		}
	}
	return 0, false
}

func (p *tunnelPicker) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return nil, err
	}
	i, ok := p.pick(host)
	if !ok {
		return nil, fmt.Errorf("%w: %s", proxy.ErrRefusedByRoutes, host)
	}
	c, err := p.curs[i].DialContext(ctx, network, address)
	if err != nil {
		return nil, fmt.Errorf("tunnel %s: %w", p.names[i], err)
	}
	return c, nil
}

// serveMulti is serve for a tunnels list: the same listeners, proxies and
// forwards, one currentTunnel and one reconnect loop per tunnel, and a
// router that picks the tunnel by destination. The listeners are serve's
// (listen).
func serveMulti(ctx context.Context, sc serveConfig, specs []tunnelSpec) error {
	log := sc.Log
	sc.Proxy.Routes = unionRoutes(specs, sc.Proxy.Routes.Others)
	specs = append([]tunnelSpec(nil), specs...)
	for i := range specs {
		if specs[i].Config.Capture == nil {
			specs[i].Config.Capture = sc.Tunnel.Capture // --pcap: every tunnel's stack into the one file
		}
	}
	ls, err := listen(sc)
	if err != nil {
		return err
	}
	defer ls.Close()
	socksLn, httpLn, fw := ls.socks, ls.http, ls.fw
	for _, s := range specs {
		log.Info("tunnel routes", "tunnel", s.Name, "server", s.Config.Server, "routes", fmt.Sprint(s.Routes.Nets), "domains", strings.Join(s.Routes.Domains, ","))
	}
	log.Info("destinations in no tunnel's routes", "others", sc.Proxy.Routes.Others.String())

	// Connect them all at once; all must come up.
	type result struct {
		c   *tunnel.Client
		err error
	}
	results := make([]chan result, len(specs))
	for i, s := range specs {
		results[i] = make(chan result, 1)
		go func() {
			c, err := dialTunnel(ctx, s.Config, s.Config.Logger)
			results[i] <- result{c, err}
		}()
	}
	clients := make([]*tunnel.Client, len(specs))
	var first error
	for i, s := range specs {
		r := <-results[i]
		clients[i] = r.c
		if r.err != nil && first == nil {
			first = fmt.Errorf("tunnel %s: %w", s.Name, r.err)
		}
	}
	if first != nil {
		for _, c := range clients {
			if c != nil {
				c.Close()
			}
		}
		if ctx.Err() != nil && errors.Is(first, context.Canceled) {
			return nil
		}
		return first
	}

	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	picker := &tunnelPicker{}
	for i, s := range specs {
		cur := newCurrentTunnel(sc.ConnectWait)
		cur.setUp(clients[i])
		sc.Monitor.tunnel(s.Name).tunnelUp(clients[i])
		picker.names = append(picker.names, s.Name)
		picker.routes = append(picker.routes, s.Routes)
		picker.curs = append(picker.curs, cur)
	}
	router := &proxy.Router{Routes: sc.Proxy.Routes, Tunnel: picker}
	errc := make(chan error, 2)
	var socksA, httpA net.Addr
	lim := proxy.NewLimiter(sc.Proxy.MaxConns)
	if socksLn != nil {
		o := sc.Proxy.options(log.With("proxy", "socks5"), lim)
		o.Stats = sc.Monitor.proxyStats("socks5")
		s := proxy.NewSOCKS5(router, nil, o)
		go func() { errc <- proxyStopped(s.Serve(pctx, socksLn)) }()
		socksA = socksLn.Addr()
	}
	if httpLn != nil {
		o := sc.Proxy.options(log.With("proxy", "http"), lim)
		o.Stats = sc.Monitor.proxyStats("http")
		h := proxy.NewHTTP(router, o)
		go func() { errc <- proxyStopped(h.Serve(pctx, httpLn)) }()
		httpA = httpLn.Addr()
	}
	fw.serveLocal(pctx, router)
	sc.Monitor.proxiesListening()
	logListening(log, socksA, httpA)
	supervised := make(chan error, len(specs))
	for i, s := range specs {
		fw.tunnelUp(pctx, clients[i])
		tm := sc.Monitor.tunnel(s.Name)
		go func() { supervised <- superviseTunnel(pctx, s, clients[i], picker.curs[i], tm, fw, sc.ConnectWait) }()
	}
	// On the way out, the supervisors close their tunnels as pctx ends.
	stopAll := func() {
		cancel()
		for _, cur := range picker.curs {
			cur.setDown(tunnel.ErrClosed)
		}
		for range specs {
			<-supervised
		}
	}
	if sc.Ready != nil {
		sc.Ready(socksA, httpA)
	}
	select {
	case <-ctx.Done():
		log.Info("shutting down")
		stopAll()
		return nil
	case err := <-errc:
		stopAll()
		return err
	case err := <-supervised:
		specs = specs[1:] // one supervisor fewer to wait for
		stopAll()
		return err
	}
}

func proxyStopped(err error) error {
	if err == nil {
		err = errors.New("stopped")
	}
	return fmt.Errorf("proxy failed: %w", err)
}

// superviseTunnel is one tunnel's life after it first came up: it
// reconnects it whenever it goes down, on its own, until ctx ends (nil) or
// reconnecting cannot help, and reports to tm (the admin endpoint).
func superviseTunnel(ctx context.Context, s tunnelSpec, c *tunnel.Client, cur *currentTunnel, tm *tunnelMonitor, fw *forwarder, connectWait time.Duration) error {
	log := s.Config.Logger
	defer func() { c.Close() }()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-c.Done():
		}
		err := c.Err()
		if err == nil {
			err = errors.New("closed")
		}
		cur.setDown(err)
		tm.tunnelDown(err)
		if !retryable(err) {
			return fmt.Errorf("tunnel %s went down: %w", s.Name, err)
		}
		log.Warn("tunnel went down, reconnecting", "err", err.Error(), "connect_wait", connectWait.String())
		downAt := time.Now()
		next, rerr := reconnect(ctx, s.Config, log, cur)
		if rerr != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("tunnel %s went down and reconnecting failed: %w", s.Name, rerr)
		}
		c = next
		cur.setUp(c)
		tm.tunnelUp(c)
		tm.reconnected(err)
		fw.tunnelUp(ctx, c)
		log.Info("tunnel reconnected", "cause", err.Error(), "outage", time.Since(downAt).Round(time.Millisecond).String())
	}
}
