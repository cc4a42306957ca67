package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/l2tpproxy/l2tpproxy/tunnel/esp"
	"github.com/l2tpproxy/l2tpproxy/tunnel/testserver"
)

// testServerCommand runs only the built-in test server, in its own process,
// so that benchmarks can measure the client process alone (make bench). It
// prints KEY=VALUE lines like the interop harness's `up` scripts.
func testServerCommand() *cli.Command {
	return &cli.Command{
		Name:   "testserver",
		Usage:  "run only the built-in test server on loopback (for benchmarks)",
		Hidden: true,
		Flags: []cli.Flag{
			&cli.Int64Flag{Name: "big-size", Value: 64 << 20, Usage: "size of /big.bin in bytes"},
			&cli.StringFlag{Name: "log-level", Value: "warn"},
			&cli.StringFlag{Name: "phase2", EnvVars: []string{"L2TPPROXY_TESTSERVER_PHASE2"},
				Usage: "ESP suite the server accepts: gcm (AES-GCM-128/ICV16), cbc (AES-CBC-128/HMAC-SHA1-96) or all (IKE defaults)"},
			&cli.BoolFlag{Name: "gso", EnvVars: []string{"L2TPPROXY_TESTSERVER_GSO"},
				Usage: "send UDP GSO batches (default: one datagram at a time, as real servers do)"},
			&cli.Float64Flag{Name: "loss", EnvVars: []string{"L2TPPROXY_TESTSERVER_LOSS"},
				Usage: "drop this fraction of NAT-T datagrams each way (a seeded relay in front of the NAT-T port)"},
			&cli.Uint64Flag{Name: "loss-seed", Value: 1, Usage: "seed of the relay's drops"},
		},
		Action: func(cx *cli.Context) error {
			log, err := newLogger(cx.String("log-level"))
			if err != nil {
				return err
			}
			cfg := testserver.Config{Logger: log, BigSize: cx.Int64("big-size"), SendGSO: cx.Bool("gso")}
			switch p2 := cx.String("phase2"); p2 {
			case "", "all":
			case "gcm":
				cfg.Phase2 = []esp.Algorithm{{Enc: esp.EncAESGCM16, EncKeyBits: 128}}
			case "cbc":
				cfg.Phase2 = []esp.Algorithm{{Enc: esp.EncAESCBC, EncKeyBits: 128, Auth: esp.AuthHMACSHA1}}
			default:
				return fmt.Errorf("--phase2 %q: want gcm, cbc or all", p2)
			}
			srv, err := testserver.Start(cfg)
			if err != nil {
				return err
			}
			defer srv.Close()
			natt := srv.NATTAddr()
			if loss := cx.Float64("loss"); loss > 0 {
				relay, err := testserver.StartLossyRelay(natt, loss, cx.Uint64("loss-seed"))
				if err != nil {
					return err
				}
				defer func() {
					relay.Close()
					fmt.Fprintf(os.Stderr, "relay: to server %d forwarded, %d dropped; to client %d forwarded, %d dropped\n",
						relay.ToServer.Load(), relay.DroppedToServer.Load(), relay.ToClient.Load(), relay.DroppedToClient.Load())
				}()
				natt = relay.Addr()
			}
			kv := func(k string, v any) { fmt.Printf("%s=%v\n", k, v) }
			kv("SERVER", srv.IKEAddr().Addr())
			kv("IKE_PORT", srv.IKEAddr().Port())
			kv("NATT_PORT", natt.Port())
			kv("PSK", "testpsk")
			kv("VPN_USER", "vpnuser")
			kv("VPN_PASSWORD", "vpnpass")
			kv("TARGET_IP", testserver.ServerIP)
			kv("TARGET_NAME", testserver.TargetName)
			kv("HELLO_URL", fmt.Sprintf("http://%s/hello.txt", testserver.ServerIP))
			kv("BIG_URL", fmt.Sprintf("http://%s/big.bin", testserver.ServerIP))
			kv("BIG_SIZE", cx.Int64("big-size"))
			kv("BIG_SHA256", srv.BigSHA256())
			kv("UPLOAD_URL", fmt.Sprintf("http://%s/upload", testserver.ServerIP))
			kv("SERVER_KIND", "testserver")
			os.Stdout.Sync()
			ctx, stop := signal.NotifyContext(cx.Context, os.Interrupt, syscall.SIGTERM)
			defer stop()
			<-ctx.Done()
			return nil
		},
	}
}
