// Command l2tpproxy connects to an L2TP/IPsec VPN server entirely in user
// space (no root, no TUN device, no kernel modules) and exposes the VPN as
// local SOCKS5 and HTTP proxies.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/l2tpproxy/l2tpproxy/proxy"
	"github.com/l2tpproxy/l2tpproxy/tunnel"
	"github.com/l2tpproxy/l2tpproxy/tunnel/esp"
	"github.com/l2tpproxy/l2tpproxy/tunnel/ike"
	"github.com/l2tpproxy/l2tpproxy/tunnel/ppp"
)

// Exit codes, one per failure class, so scripts (and CI jobs) can tell a
// wrong password from an unreachable server without parsing text.
const (
	exitOK          = 0
	exitFailure     = 1 // the tunnel went down after it was up, or another error
	exitConfig      = 2
	exitUnreachable = 3
	exitIKE         = 4
	exitL2TP        = 5
	exitPPP         = 6
)

func main() {
	os.Exit(run(os.Args))
}

func run(args []string) int {
	app := newApp()
	if err := app.Run(args); err != nil {
		if code, ok := commandExitCode(err); ok {
			return code // exec: the command's own exit code, nothing to add
		}
		fmt.Fprintln(os.Stderr, "l2tpproxy:", oneLine(err))
		return exitCode(err)
	}
	return exitOK
}

func newApp() *cli.App {
	return &cli.App{
		Name:  "l2tpproxy",
		Usage: "use an L2TP/IPsec VPN through local SOCKS5 and HTTP proxies, without root",
		Description: "l2tpproxy runs IKEv1, ESP, L2TP, PPP and a TCP/IP stack in one unprivileged process.\n" +
			"Secrets are best passed in files (--psk-file, --password-file) or environment variables:\n" +
			"command-line values are visible to other users in the process list.",
		Version:  versionString(),
		Commands: []*cli.Command{configurable(upCommand(), true), configurable(execCommand(), false), checkCommand(), versionCommand(), demoCommand(), testServerCommand(), probeCommand()},
		// Errors are printed once, by run, as a single line.
		ExitErrHandler: func(*cli.Context, error) {},
	}
}

func env(names ...string) []string { return names }

func connectionFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "server", Usage: "VPN server `HOST[:PORT]` (IKE port, default 500)", EnvVars: env("L2TPPROXY_SERVER", "VPN_SERVER_IP", "VPN_SERVER")},
		&cli.UintFlag{Name: "natt-port", Value: 4500, Usage: "the server's NAT-T (IKE/ESP over UDP) `PORT`", EnvVars: env("L2TPPROXY_NATT_PORT")},
		&cli.StringFlag{Name: "psk", Usage: "IPsec pre-shared key", EnvVars: env("L2TPPROXY_PSK", "VPN_IPSEC_PSK")},
		&cli.StringFlag{Name: "psk-file", Usage: "read the pre-shared key from `FILE`", EnvVars: env("L2TPPROXY_PSK_FILE")},
		&cli.StringFlag{Name: "cert", Usage: "authenticate IKE with this certificate instead of a PSK: PEM `FILE`, ours first, then any intermediates", EnvVars: env("L2TPPROXY_CERT")},
		&cli.StringFlag{Name: "key", Usage: "the certificate's RSA private key, PEM `FILE` (PKCS#1 or PKCS#8, unencrypted)", EnvVars: env("L2TPPROXY_KEY")},
		&cli.StringFlag{Name: "p12", Usage: "the certificate and its RSA key in one PKCS#12 `FILE` (.p12/.pfx) instead of --cert and --key; its CA certificates are trusted unless --ca is given", EnvVars: env("L2TPPROXY_P12")},
		&cli.StringFlag{Name: "p12-password", Usage: "the --p12 file's password (empty if not given)", EnvVars: env("L2TPPROXY_P12_PASSWORD")},
		&cli.StringFlag{Name: "p12-password-file", Usage: "read the --p12 file's password from `FILE`", EnvVars: env("L2TPPROXY_P12_PASSWORD_FILE")},
		&cli.StringFlag{Name: "ca", Usage: "PEM `FILE` of the CA certificates the server's certificate must lead to", EnvVars: env("L2TPPROXY_CA")},
		&cli.StringFlag{Name: "user", Usage: "VPN user name", EnvVars: env("L2TPPROXY_USER", "VPN_USER")},
		&cli.StringFlag{Name: "password", Usage: "VPN password", EnvVars: env("L2TPPROXY_PASSWORD", "VPN_PASSWORD")},
		&cli.StringFlag{Name: "password-file", Usage: "read the VPN password from `FILE`", EnvVars: env("L2TPPROXY_PASSWORD_FILE")},
		&cli.StringFlag{Name: "pfs", Value: "auto", Usage: "perfect forward secrecy in Quick Mode: auto (offer it only if the server refuses without), yes, no", EnvVars: env("L2TPPROXY_PFS")},
		&cli.StringFlag{Name: "ppp-auth", Value: ppp.DefaultAuthPolicy.String(), Usage: "PPP authentication methods to accept, comma-separated `LIST` of pap, chap, mschapv2, eap (PAP is off by default: it sends the password in clear)", EnvVars: env("L2TPPROXY_PPP_AUTH")},
		&cli.StringFlag{Name: "ike", Usage: "phase-1 proposals to offer instead of the defaults, in strongSwan's syntax, e.g. `aes256-sha256-modp2048,3des-sha1-modp1024` (aes128/192/256, 3des; md5, sha1, sha256/384/512; modp1024-4096, ecp256/384/521)", EnvVars: env("L2TPPROXY_IKE")},
		&cli.StringFlag{Name: "esp", Usage: "ESP proposals to offer instead of the defaults, e.g. `aes128gcm16,aes256-sha1` (aes<bits>gcm8/12/16, or a cipher and md5/sha1/sha256/384/512)", EnvVars: env("L2TPPROXY_ESP")},
		&cli.StringFlag{Name: "ike-mode", Value: "main", Usage: "phase-1 exchange: main, or aggressive (servers that require it; the PSK is then open to offline guessing, and only the first DH group of --ike is offered)", EnvVars: env("L2TPPROXY_IKE_MODE")},
		&cli.StringFlag{Name: "local-id", Usage: "our IKE identity `ID`, in strongSwan's syntax: 1.2.3.4, vpn.example.com or @vpn.example.com (FQDN), user@example.com, @#6b6579 (KEY_ID, hex); default our IP address", EnvVars: env("L2TPPROXY_LOCAL_ID")},
		&cli.StringFlag{Name: "remote-id", Usage: "the server's IKE identity `ID` (same syntax); if given, a server that identifies otherwise is refused. With --cert: a name, address or DN (C=CH, O=Org, CN=vpn) its certificate must carry (default: the --server host)", EnvVars: env("L2TPPROXY_REMOTE_ID")},
		&cli.DurationFlag{Name: "connect-timeout", Value: 30 * time.Second, Usage: "give up connecting after this long", EnvVars: env("L2TPPROXY_CONNECT_TIMEOUT")},
		&cli.DurationFlag{Name: "ike-lifetime", Value: 8 * time.Hour, Usage: "ISAKMP SA lifetime to offer; we negotiate a new IKE SA at 90% of it (or of a shorter one the server asks for), make-before-break", EnvVars: env("L2TPPROXY_IKE_LIFETIME")},
		&cli.DurationFlag{Name: "esp-lifetime", Value: time.Hour, Usage: "IPsec SA lifetime to offer; we negotiate a new IPsec SA at 90% of it (or of a shorter one the server asks for)", EnvVars: env("L2TPPROXY_ESP_LIFETIME")},
		&cli.DurationFlag{Name: "dpd-interval", Value: 10 * time.Second, Usage: "dead-peer detection: ask the server (R-U-THERE) after this long without traffic from it; 3 unanswered end the tunnel (0 disables)", EnvVars: env("L2TPPROXY_DPD_INTERVAL")},
	}
}

func listenerFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "socks5", Value: "127.0.0.1:1080", Usage: "SOCKS5 proxy listen `ADDR` (empty to disable)", EnvVars: env("L2TPPROXY_SOCKS5")},
		&cli.StringFlag{Name: "http", Value: "127.0.0.1:3128", Usage: "HTTP proxy listen `ADDR` (empty to disable)", EnvVars: env("L2TPPROXY_HTTP")},
		&cli.StringFlag{Name: "proxy-user", Usage: "user name proxy clients must give (SOCKS5 RFC 1929, HTTP Proxy-Authorization Basic)", EnvVars: env("L2TPPROXY_PROXY_USER")},
		&cli.StringFlag{Name: "proxy-password", Usage: "password proxy clients must give", EnvVars: env("L2TPPROXY_PROXY_PASSWORD")},
		&cli.StringFlag{Name: "proxy-password-file", Usage: "read the proxy password from `FILE`", EnvVars: env("L2TPPROXY_PROXY_PASSWORD_FILE")},
		&cli.BoolFlag{Name: "insecure-open-proxy", Usage: "allow listening beyond loopback WITHOUT proxy credentials: anyone who reaches the port uses your VPN", EnvVars: env("L2TPPROXY_INSECURE_OPEN_PROXY")},
		&cli.IntFlag{Name: "max-connections", Value: 2048, Usage: "client connections open at once, both proxies together; more are refused", EnvVars: env("L2TPPROXY_MAX_CONNECTIONS")},
		&cli.DurationFlag{Name: "handshake-timeout", Value: proxy.DefaultHandshakeTimeout, Usage: "time a client has for its SOCKS5 handshake or HTTP request header", EnvVars: env("L2TPPROXY_HANDSHAKE_TIMEOUT")},
		&cli.StringSliceFlag{Name: "route", Usage: "send this IPv4 `CIDR` through the VPN (repeatable; with --route or --domain, other destinations go --others)", EnvVars: env("L2TPPROXY_ROUTE")},
		&cli.StringSliceFlag{Name: "domain", Usage: "send names equal to or under this `SUFFIX` through the VPN, resolved by its DNS (repeatable)", EnvVars: env("L2TPPROXY_DOMAIN")},
		&cli.StringFlag{Name: "others", Value: "direct", Usage: "with --route/--domain, destinations outside them are dialled from this host (direct) or refused (refuse)", EnvVars: env("L2TPPROXY_OTHERS")},
		&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error", EnvVars: env("L2TPPROXY_LOG_LEVEL")},
		&cli.StringFlag{Name: "cpuprofile", Usage: "write a CPU profile to `FILE` (for performance work)", Hidden: true},
	}
}

func upCommand() *cli.Command {
	return &cli.Command{
		Name:  "up",
		Usage: "connect to an L2TP/IPsec server and serve the proxies until interrupted",
		Flags: append(append(append(append(connectionFlags(), listenerFlags()...), waitFlags()...), serviceFlags()...), forwardFlags()...),
		Action: func(cx *cli.Context) error {
			log, err := serviceLogger(cx)
			if err != nil {
				return err
			}
			wait, err := connectWait(cx)
			if err != nil {
				return err
			}
			cfg, err := tunnelConfig(cx, log)
			if err != nil {
				return err
			}
			fwd, err := forwardsFrom(cx)
			if err != nil {
				return err
			}
			ps, err := proxySettingsFrom(cx)
			if err != nil {
				return err
			}
			sc := serveConfig{Tunnel: cfg, SOCKS5: cx.String("socks5"), HTTP: cx.String("http"), Log: log, Proxy: ps, ConnectWait: wait, Forwards: fwd}
			if sc.Tunnels, err = tunnelsFrom(cx, log); err != nil {
				return err
			}
			if cx.Bool(flagCheckConfig) {
				return checkServe(cx.App.Writer, sc)
			}
			ctx, stop := signal.NotifyContext(cx.Context, os.Interrupt, syscall.SIGTERM)
			defer stop()
			if f := cx.String("cpuprofile"); f != "" {
				stopProfile, err := startCPUProfile(f)
				if err != nil {
					return err
				}
				defer stopProfile()
			}
			svc, err := startService(cx, sc.Proxy, tunnelNames(sc.Tunnels), log)
			if err != nil {
				return err
			}
			defer svc.Close()
			sc.Tunnel.Capture = svc.capture()
			sc.Monitor = svc.monitor
			return serve(ctx, sc)
		},
	}
}

// secret returns a secret from its flag or, failing that, its file flag. A
// file's trailing newline is dropped. Errors never contain the secret.
func secret(cx flagValues, name, fileFlag string) ([]byte, error) {
	if v := cx.String(name); v != "" {
		if cx.String(fileFlag) != "" {
			return nil, configError("give either --%s or --%s, not both", name, fileFlag)
		}
		return []byte(v), nil
	}
	path := cx.String(fileFlag)
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, configError("cannot read --%s: %v", fileFlag, err)
	}
	return []byte(strings.TrimRight(string(b), "\r\n")), nil
}

// flagValues is what tunnelConfig reads: the command's flags (a
// *cli.Context) or one tunnel of the configuration file (multitunnel.go).
type flagValues interface {
	String(name string) string
	Uint(name string) uint
	Duration(name string) time.Duration
}

func tunnelConfig(cx flagValues, log *slog.Logger) (tunnel.Config, error) {
	psk, err := secret(cx, "psk", "psk-file")
	if err != nil {
		return tunnel.Config{}, err
	}
	pw, err := secret(cx, "password", "password-file")
	if err != nil {
		return tunnel.Config{}, err
	}
	port := cx.Uint("natt-port")
	if port == 0 || port > 65535 {
		return tunnel.Config{}, configError("--natt-port %d is not a UDP port", port)
	}
	pfs, ok := ike.ParsePFS(cx.String("pfs"))
	if !ok {
		return tunnel.Config{}, configError("--pfs must be auto, yes or no, not %q", cx.String("pfs"))
	}
	auth, err := ppp.ParseAuthPolicy(cx.String("ppp-auth"))
	if err != nil {
		return tunnel.Config{}, configError("--ppp-auth: %v", err)
	}
	var p1 []ike.Phase1Transform
	if v := cx.String("ike"); v != "" {
		if p1, err = ike.ParsePhase1(v); err != nil {
			return tunnel.Config{}, configError("--ike: %v", err)
		}
	}
	var p2 []esp.Algorithm
	if v := cx.String("esp"); v != "" {
		if p2, err = ike.ParsePhase2(v); err != nil {
			return tunnel.Config{}, configError("--esp: %v", err)
		}
	}
	mode, ok := ike.ParseMode(cx.String("ike-mode"))
	if !ok {
		return tunnel.Config{}, configError("--ike-mode must be main or aggressive, not %q", cx.String("ike-mode"))
	}
	var ids [2]*ike.Identity
	for i, name := range []string{"local-id", "remote-id"} {
		if name == "remote-id" && (cx.String("cert") != "" || cx.String("p12") != "") {
			continue // a certificate's identity: checked against it (below)
		}
		if v := cx.String(name); v != "" {
			id, err := ike.ParseIdentity(v)
			if err != nil {
				return tunnel.Config{}, configError("--%s: %v", name, err)
			}
			ids[i] = &id
		}
	}
	dpd := cx.Duration("dpd-interval")
	switch {
	case dpd < 0:
		return tunnel.Config{}, configError("--dpd-interval must not be negative, got %s", dpd)
	case dpd == 0:
		dpd = -1 // tunnel.Config: negative disables, zero is the default
	}
	p1Life, p2Life := cx.Duration("ike-lifetime"), cx.Duration("esp-lifetime")
	// Below a few seconds a rekey could not finish before the next one is due.
	if p1Life < 10*time.Second || p2Life < 10*time.Second {
		return tunnel.Config{}, configError("--ike-lifetime and --esp-lifetime must be at least 10s, got %s and %s", p1Life, p2Life)
	}
	if p2Life > p1Life {
		// RFC 2409 §5.5 lets an IPsec SA outlive its ISAKMP SA, but we
		// rekey both make-before-break, so it costs nothing to keep the
		// rule every server documents: phase 2 within phase 1.
		return tunnel.Config{}, configError("--esp-lifetime (%s) must not exceed --ike-lifetime (%s)", p2Life, p1Life)
	}
	cert, err := certificates(cx)
	if err != nil {
		return tunnel.Config{}, err
	}
	var certRemoteID string
	if cert != nil {
		// With certificates the server's identity is what its certificate
		// carries: a name, an address or a DN, checked against it.
		certRemoteID = cx.String("remote-id")
	}
	return tunnel.Config{
		Cert:           cert,
		CertRemoteID:   certRemoteID,
		Phase1Lifetime: p1Life,
		Phase2Lifetime: p2Life,
		Phase1:         p1,
		Phase2:         p2,
		Server:         cx.String("server"),
		DPDInterval:    dpd,
		NATTPort:       uint16(port),
		PSK:            psk,
		User:           cx.String("user"),
		Password:       pw,
		PFS:            pfs,
		IKEMode:        mode,
		LocalID:        ids[0],
		RemoteID:       ids[1],
		Auth:           auth,
		ConnectTimeout: cx.Duration("connect-timeout"),
		Logger:         log,
	}, nil
}

// serveConfig is what serve needs: the tunnel, the proxy listen addresses
// ("" disables one), the proxies' settings, and ready, if set, called with
// the proxy addresses once they listen.
type serveConfig struct {
	Tunnel tunnel.Config
	SOCKS5 string
	HTTP   string
	Proxy  proxySettings
	Log    *slog.Logger
	Ready  func(socks, http net.Addr)
	// ConnectWait is how long a new proxy connection waits for a
	// reconnecting tunnel before it fails with the reason.
	ConnectWait time.Duration
	// Monitor, if set, follows the tunnel and counts the proxies'
	// connections (admin endpoint).
	Monitor *monitor
	// Forwards are the -L and -R port forwards (forward.go).
	Forwards []forward
	// Tunnels, if any, are the configuration file's tunnels list, served
	// instead of Tunnel (multitunnel.go).
	Tunnels []tunnelSpec
}

// listeners are what serve opens before it connects: the proxies' (nil
// when disabled) and the port forwards'.
type listeners struct {
	socks, http net.Listener
	fw          *forwarder
}

// listen opens sc's listeners. Listening comes first: a port already in
// use, or an open proxy beyond loopback, is a configuration error, found
// before we bother the VPN server.
func listen(sc serveConfig) (_ *listeners, err error) {
	ls := &listeners{}
	defer func() {
		if err != nil {
			ls.Close()
		}
	}()
	if sc.SOCKS5 != "" {
		if ls.socks, err = listenProxy("SOCKS5", "--socks5", sc.SOCKS5, sc.Proxy, sc.Log); err != nil {
			return nil, err
		}
	}
	if sc.HTTP != "" {
		if ls.http, err = listenProxy("HTTP", "--http", sc.HTTP, sc.Proxy, sc.Log); err != nil {
			return nil, err
		}
	}
	if ls.fw, err = listenForwards(sc.Forwards, sc.Proxy, sc.Log); err != nil {
		return nil, err
	}
	return ls, nil
}

// Close closes every listener that is open.
func (ls *listeners) Close() {
	for _, l := range []net.Listener{ls.socks, ls.http} {
		if l != nil {
			l.Close()
		}
	}
	if ls.fw != nil {
		ls.fw.Close()
	}
}

// serve connects, starts the proxies and runs until ctx ends (clean
// teardown, nil). If the tunnel goes down after it was up, serve reconnects
// with backoff while the proxies keep listening (their new connections wait
// up to sc.ConnectWait for it), unless reconnecting cannot help (credentials
// rejected).
func serve(ctx context.Context, sc serveConfig) error {
	if len(sc.Tunnels) > 0 {
		return serveMulti(ctx, sc, sc.Tunnels)
	}
	cfg, log, connectWait := sc.Tunnel, sc.Log, sc.ConnectWait
	ls, err := listen(sc)
	if err != nil {
		return err
	}
	defer ls.Close()
	socksLn, httpLn, fw := ls.socks, ls.http, ls.fw
	sc.Proxy.logRoutes(log)

	c, err := dialTunnel(ctx, cfg, log)
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, context.Canceled) {
			return nil
		}
		return err
	}
	cur := newCurrentTunnel(connectWait)
	cur.setUp(c)
	tm := sc.Monitor.only()
	tm.tunnelUp(c)
	defer func() {
		cur.setDown(tunnel.ErrClosed)
		c.Close()
	}()

	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	fw.serveLocal(pctx, cur)
	fw.tunnelUp(pctx, c)
	errc := make(chan error, 2)
	var socksA, httpA net.Addr
	router := &proxy.Router{Routes: sc.Proxy.Routes, Tunnel: cur}
	lim := proxy.NewLimiter(sc.Proxy.MaxConns) // shared by both proxies
	if socksLn != nil {
		o := sc.Proxy.options(log.With("proxy", "socks5"), lim)
		o.Stats = sc.Monitor.proxyStats("socks5")
		s := proxy.NewSOCKS5(router, nil, o)
		go func() { errc <- s.Serve(pctx, socksLn) }()
		socksA = socksLn.Addr()
	}
	if httpLn != nil {
		o := sc.Proxy.options(log.With("proxy", "http"), lim)
		o.Stats = sc.Monitor.proxyStats("http")
		h := proxy.NewHTTP(router, o)
		go func() { errc <- h.Serve(pctx, httpLn) }()
		httpA = httpLn.Addr()
	}
	// Ready before the log says so: a reader of "HTTP proxy listening" may ask
	// /readyz at once (it got 503 "proxies not listening yet" once, under load).
	sc.Monitor.proxiesListening()
	logListening(log, socksA, httpA)
	if sc.Ready != nil {
		sc.Ready(socksA, httpA)
	}

	for {
		select {
		case <-ctx.Done():
			log.Info("shutting down")
			cancel()
			return nil
		case err := <-errc:
			return fmt.Errorf("proxy failed: %w", err)
		case <-c.Done():
		}
		err := c.Err()
		if err == nil {
			err = errors.New("closed")
		}
		cur.setDown(err)
		tm.tunnelDown(err)
		if !retryable(err) {
			return fmt.Errorf("tunnel went down: %w", err)
		}
		log.Warn("tunnel went down, reconnecting", "err", err.Error(), "connect_wait", connectWait.String())
		downAt := time.Now()
		next, rerr := reconnect(ctx, cfg, log, cur)
		if rerr != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("tunnel went down and reconnecting failed: %w", rerr)
		}
		c = next
		cur.setUp(c)
		tm.tunnelUp(c)
		tm.reconnected(err)
		fw.tunnelUp(pctx, c)
		log.Info("tunnel reconnected", "cause", err.Error(), "outage", time.Since(downAt).Round(time.Millisecond).String())
	}
}

func dialTunnel(ctx context.Context, cfg tunnel.Config, log *slog.Logger) (*tunnel.Client, error) {
	c, err := tunnel.Dial(ctx, cfg)
	if err != nil {
		return nil, err
	}
	info := c.Info()
	log.Info("tunnel up", "address", info.Address.String(), "dns", fmt.Sprint(info.DNS), "mtu", info.MTU,
		"connect_time", info.ConnectDur.Round(time.Millisecond).String())
	return c, nil
}

// retryable tells whether reconnecting can help: not when the server
// rejected our credentials or our configuration is wrong.
func retryable(err error) bool {
	switch {
	case errors.Is(err, tunnel.ErrConfig),
		errors.Is(err, ike.ErrAuthFailed), errors.Is(err, ike.ErrNoProposalChosen),
		errors.Is(err, ppp.ErrAuthFailed), errors.Is(err, ppp.ErrAuthRejected):
		return false
	}
	return true
}

// configError is a configuration error of the CLI itself, in the same class
// (and form) as the ones tunnel.Dial reports.
func configError(format string, a ...any) error {
	return &tunnel.Error{Class: tunnel.ErrConfig, Layer: "config", Err: fmt.Errorf(format, a...)}
}

func exitCode(err error) int {
	switch {
	case errors.Is(err, tunnel.ErrConfig):
		return exitConfig
	case errors.Is(err, tunnel.ErrServerUnreachable):
		return exitUnreachable
	case errors.Is(err, tunnel.ErrIKE):
		return exitIKE
	case errors.Is(err, tunnel.ErrL2TP):
		return exitL2TP
	case errors.Is(err, tunnel.ErrPPP):
		return exitPPP
	}
	return exitFailure
}

// oneLine keeps the report to one line whatever a layer put in its error.
func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

func newLogger(level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, configError("--log-level %q: want debug, info, warn or error", level)
	}
	h := slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{
		Level: l,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey && len(groups) == 0 {
				return slog.String(slog.TimeKey, a.Value.Time().Format("15:04:05.000"))
			}
			return a
		},
	})
	return slog.New(h), nil
}

func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, configError("--cpuprofile: %v", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, configError("--cpuprofile: %v", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}
