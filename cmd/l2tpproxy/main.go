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
	"net/netip"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/l2tpproxy/l2tpproxy/proxy"
	"github.com/l2tpproxy/l2tpproxy/tunnel"
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
		Commands: []*cli.Command{upCommand(), demoCommand(), testServerCommand()},
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
		&cli.StringFlag{Name: "user", Usage: "VPN user name", EnvVars: env("L2TPPROXY_USER", "VPN_USER")},
		&cli.StringFlag{Name: "password", Usage: "VPN password", EnvVars: env("L2TPPROXY_PASSWORD", "VPN_PASSWORD")},
		&cli.StringFlag{Name: "password-file", Usage: "read the VPN password from `FILE`", EnvVars: env("L2TPPROXY_PASSWORD_FILE")},
		&cli.StringFlag{Name: "pfs", Value: "auto", Usage: "perfect forward secrecy in Quick Mode: auto (offer it only if the server refuses without), yes, no", EnvVars: env("L2TPPROXY_PFS")},
		&cli.DurationFlag{Name: "connect-timeout", Value: 30 * time.Second, Usage: "give up connecting after this long", EnvVars: env("L2TPPROXY_CONNECT_TIMEOUT")},
		&cli.DurationFlag{Name: "dpd-interval", Value: 10 * time.Second, Usage: "dead-peer detection: ask the server (R-U-THERE) after this long without traffic from it; 3 unanswered end the tunnel (0 disables)", EnvVars: env("L2TPPROXY_DPD_INTERVAL")},
	}
}

func listenerFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "socks5", Value: "127.0.0.1:1080", Usage: "SOCKS5 proxy listen `ADDR` (empty to disable)", EnvVars: env("L2TPPROXY_SOCKS5")},
		&cli.StringFlag{Name: "http", Value: "127.0.0.1:3128", Usage: "HTTP proxy listen `ADDR` (empty to disable)", EnvVars: env("L2TPPROXY_HTTP")},
		&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error", EnvVars: env("L2TPPROXY_LOG_LEVEL")},
		&cli.StringFlag{Name: "cpuprofile", Usage: "write a CPU profile to `FILE` (for performance work)", Hidden: true},
	}
}

func upCommand() *cli.Command {
	return &cli.Command{
		Name:  "up",
		Usage: "connect to an L2TP/IPsec server and serve the proxies until interrupted",
		Flags: append(connectionFlags(), listenerFlags()...),
		Action: func(cx *cli.Context) error {
			log, err := newLogger(cx.String("log-level"))
			if err != nil {
				return err
			}
			cfg, err := tunnelConfig(cx, log)
			if err != nil {
				return err
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
			return serve(ctx, cfg, cx.String("socks5"), cx.String("http"), log, nil)
		},
	}
}

// secret returns a secret from its flag or, failing that, its file flag. A
// file's trailing newline is dropped. Errors never contain the secret.
func secret(cx *cli.Context, name, fileFlag string) ([]byte, error) {
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

func tunnelConfig(cx *cli.Context, log *slog.Logger) (tunnel.Config, error) {
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
	dpd := cx.Duration("dpd-interval")
	switch {
	case dpd < 0:
		return tunnel.Config{}, configError("--dpd-interval must not be negative, got %s", dpd)
	case dpd == 0:
		dpd = -1 // tunnel.Config: negative disables, zero is the default
	}
	return tunnel.Config{
		Server:         cx.String("server"),
		DPDInterval:    dpd,
		NATTPort:       uint16(port),
		PSK:            psk,
		User:           cx.String("user"),
		Password:       pw,
		PFS:            pfs,
		ConnectTimeout: cx.Duration("connect-timeout"),
		Logger:         log,
	}, nil
}

// serve connects, starts the proxies and runs until ctx ends (clean
// teardown, nil). If the tunnel goes down after it was up, serve reconnects
// with backoff while the proxies keep listening (their new connections fail
// fast meanwhile), unless reconnecting cannot help (credentials rejected).
// ready, if set, is called with the proxy addresses once they listen.
func serve(ctx context.Context, cfg tunnel.Config, socksAddr, httpAddr string, log *slog.Logger, ready func(socks, http net.Addr)) error {
	// Listen first: a port already in use is a configuration error, found
	// before we bother the VPN server.
	var socksLn, httpLn net.Listener
	var err error
	if socksAddr != "" {
		if socksLn, err = net.Listen("tcp", socksAddr); err != nil {
			return configError("cannot listen for SOCKS5 on %s: %v", socksAddr, err)
		}
		defer socksLn.Close()
	}
	if httpAddr != "" {
		if httpLn, err = net.Listen("tcp", httpAddr); err != nil {
			return configError("cannot listen for HTTP on %s: %v", httpAddr, err)
		}
		defer httpLn.Close()
	}

	c, err := dialTunnel(ctx, cfg, log)
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, context.Canceled) {
			return nil
		}
		return err
	}
	var cur currentTunnel
	cur.set(c)
	defer func() {
		if c := cur.set(nil); c != nil {
			c.Close()
		}
	}()

	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 2)
	var socksA, httpA net.Addr
	if socksLn != nil {
		s := proxy.NewSOCKS5(&cur, &cur, log.With("proxy", "socks5"))
		go func() { errc <- s.Serve(pctx, socksLn) }()
		socksA = socksLn.Addr()
		log.Info("SOCKS5 proxy listening", "addr", socksA.String())
	}
	if httpLn != nil {
		h := proxy.NewHTTP(&cur, log.With("proxy", "http"))
		go func() { errc <- h.Serve(pctx, httpLn) }()
		httpA = httpLn.Addr()
		log.Info("HTTP proxy listening", "addr", httpA.String())
	}
	if ready != nil {
		ready(socksA, httpA)
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
		cur.set(nil)
		if err == nil {
			err = errors.New("closed")
		}
		if !retryable(err) {
			return fmt.Errorf("tunnel went down: %w", err)
		}
		log.Warn("tunnel went down, reconnecting", "err", err.Error())
		if c, err = reconnect(ctx, cfg, log); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("tunnel went down and reconnecting failed: %w", err)
		}
		cur.set(c)
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

// reconnect retries with exponential backoff (1 s doubling to 30 s) until
// it connects, ctx ends, or the server rejects our credentials.
func reconnect(ctx context.Context, cfg tunnel.Config, log *slog.Logger) (*tunnel.Client, error) {
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
		log.Warn("reconnect failed", "err", err.Error(), "retry_in", (2 * wait).String())
		wait = min(2*wait, 30*time.Second)
	}
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

// currentTunnel is what the proxies dial through: the tunnel that is up now,
// if any. Connections made through a tunnel that went down fail with it.
type currentTunnel struct{ c atomic.Pointer[tunnel.Client] }

var errTunnelDown = errors.New("the VPN tunnel is down (reconnecting)")

func (t *currentTunnel) set(c *tunnel.Client) *tunnel.Client { return t.c.Swap(c) }

func (t *currentTunnel) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	c := t.c.Load()
	if c == nil {
		return nil, errTunnelDown
	}
	return c.DialContext(ctx, network, address)
}

func (t *currentTunnel) LookupHost(ctx context.Context, host string) ([]netip.Addr, error) {
	c := t.c.Load()
	if c == nil {
		return nil, errTunnelDown
	}
	return c.LookupHost(ctx, host)
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
