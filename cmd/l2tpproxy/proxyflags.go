package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/l2tpproxy/l2tpproxy/proxy"
)

// proxySettings are the proxies' safety and routing settings (the
// --proxy-*, --insecure-open-proxy, --max-connections, --handshake-timeout,
// --route, --domain and --others flags). The zero value is safe: loopback
// only, no credentials, no limit, the default handshake timeout, everything
// through the VPN, no PAC file.
type proxySettings struct {
	Credentials      *proxy.Credentials // nil: no authentication
	InsecureOpen     bool               // allow non-loopback listeners without credentials
	MaxConns         int                // 0: no limit
	HandshakeTimeout time.Duration
	Routes           *proxy.Routes // never nil; All() when no --route/--domain
}

func proxySettingsFrom(cx *cli.Context) (proxySettings, error) {
	var ps proxySettings
	pw, err := secret(cx, "proxy-password", "proxy-password-file")
	if err != nil {
		return ps, err
	}
	user := cx.String("proxy-user")
	switch {
	case user != "" && len(pw) == 0:
		return ps, configError("--proxy-user needs --proxy-password or --proxy-password-file")
	case user == "" && len(pw) != 0:
		return ps, configError("a proxy password needs --proxy-user")
	case user != "":
		ps.Credentials = proxy.NewCredentials(user, pw)
	}
	ps.InsecureOpen = cx.Bool("insecure-open-proxy")
	if ps.MaxConns = cx.Int("max-connections"); ps.MaxConns < 0 {
		return ps, configError("--max-connections must be positive (0: no limit)")
	}
	if ps.HandshakeTimeout = cx.Duration("handshake-timeout"); ps.HandshakeTimeout <= 0 {
		return ps, configError("--handshake-timeout must be positive")
	}
	ps.Routes, err = proxy.ParseRoutes(splitList(cx.StringSlice("route")), splitList(cx.StringSlice("domain")), cx.String("others"))
	if err != nil {
		return ps, configError("%v", err)
	}
	return ps, nil
}

// splitList splits comma-separated values (a flag given as "a,b" on the
// command line; the environment variables are split by the CLI library).
func splitList(vs []string) []string {
	var out []string
	for _, v := range vs {
		for _, f := range strings.Split(v, ",") {
			if f = strings.TrimSpace(f); f != "" {
				out = append(out, f)
			}
		}
	}
	return out
}

func (ps proxySettings) options(log *slog.Logger, lim *proxy.Limiter) *proxy.Options {
	return &proxy.Options{
		Credentials:      ps.Credentials,
		Limiter:          lim,
		HandshakeTimeout: ps.HandshakeTimeout,
		PAC:              ps.Routes,
		Logger:           log,
	}
}

func (ps proxySettings) logRoutes(log *slog.Logger) {
	r := ps.Routes
	if r.All() {
		return
	}
	log.Info("split routing: only these destinations go through the VPN",
		"routes", fmt.Sprint(r.Nets), "domains", strings.Join(r.Domains, ","), "others", r.Others.String())
}

var errOpenProxy = errors.New("open proxy")

// listenProxy listens for one proxy. A listener that is not on a loopback
// address needs credentials (or --insecure-open-proxy): otherwise anyone
// who can reach the port uses the VPN.
func listenProxy(kind, flag, addr string, ps proxySettings, log *slog.Logger) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, configError("cannot listen for %s on %s: %v", kind, addr, err)
	}
	ta, ok := ln.Addr().(*net.TCPAddr)
	if ok && ta.IP.IsLoopback() || ps.Credentials != nil {
		return ln, nil
	}
	if !ps.InsecureOpen {
		ln.Close()
		return nil, configError("%s %s is not a loopback address: proxy credentials are needed (--proxy-user and --proxy-password or --proxy-password-file), or --insecure-open-proxy", flag, addr)
	}
	log.Warn("INSECURE OPEN PROXY: listening beyond loopback WITHOUT credentials (--insecure-open-proxy); anyone who can reach this port can use your VPN",
		"proxy", kind, "addr", ln.Addr().String())
	return ln, nil
}
