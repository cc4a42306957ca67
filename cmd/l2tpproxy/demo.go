package main

import (
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/l2tpproxy/l2tpproxy/tunnel"
	"github.com/l2tpproxy/l2tpproxy/tunnel/testserver"
)

// demoCommand runs the in-process test server and the client against it, so
// a newcomer can see the whole stack work without a VPN server or root.
func demoCommand() *cli.Command {
	return &cli.Command{
		Name:  "demo",
		Usage: "run a built-in L2TP/IPsec test server on loopback and connect to it (no VPN server or root needed)",
		Flags: append(listenerFlags(), waitFlags()...),
		Action: func(cx *cli.Context) error {
			log, err := newLogger(cx.String("log-level"))
			if err != nil {
				return err
			}
			srv, err := testserver.Start(testserver.Config{Logger: log.With("side", "server")})
			if err != nil {
				return fmt.Errorf("cannot start the test server: %w", err)
			}
			defer srv.Close()
			cfg := tunnel.Config{
				Server:   srv.IKEAddr().String(),
				NATTPort: srv.NATTAddr().Port(),
				PSK:      []byte("testpsk"),
				User:     "vpnuser",
				Password: []byte("vpnpass"),
				Logger:   log,
			}
			ps, err := proxySettingsFrom(cx)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cx.Context, os.Interrupt, syscall.SIGTERM)
			defer stop()
			return serve(ctx, serveConfig{Tunnel: cfg, SOCKS5: cx.String("socks5"), HTTP: cx.String("http"), Log: log, Proxy: ps, ConnectWait: cx.Duration("connect-wait"), Ready: func(socks, http net.Addr) {
				fmt.Println("l2tpproxy demo: connected to the built-in test server at", srv.IKEAddr())
				if socks != nil {
					fmt.Printf("  curl --socks5-hostname %s %s\n", socks, srv.URL("/hello.txt"))
				}
				if http != nil {
					fmt.Printf("  curl -x http://%s %s\n", http, srv.URL("/hello.txt"))
					fmt.Printf("  curl -x http://%s -o /dev/null %s   # 64 MiB\n", http, srv.URL("/big.bin"))
				}
				fmt.Println("Press Ctrl-C to stop.")
			}})
		},
	}
}
