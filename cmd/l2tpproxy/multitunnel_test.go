package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/l2tpproxy/l2tpproxy/tunnel/testserver"
)

// parseUp runs `up ARGS` with an action that only reads the settings, as
// the real one does, and returns the serveConfig it would serve.
func parseUp(t *testing.T, log *slog.Logger, args ...string) (serveConfig, error) {
	t.Helper()
	var sc serveConfig
	cmd := upCommand()
	cmd.Action = func(cx *cli.Context) error {
		ps, err := proxySettingsFrom(cx)
		if err != nil {
			return err
		}
		fwd, err := forwardsFrom(cx)
		if err != nil {
			return err
		}
		sc = serveConfig{SOCKS5: cx.String("socks5"), HTTP: cx.String("http"), Log: log, Proxy: ps, Forwards: fwd, ConnectWait: cx.Duration("connect-wait")}
		sc.Tunnels, err = tunnelsFrom(cx, log)
		return err
	}
	app := &cli.App{Name: "l2tpproxy", Commands: []*cli.Command{configurable(cmd, true)}, ExitErrHandler: func(*cli.Context, error) {}}
	err := app.Run(append([]string{"l2tpproxy", "up"}, args...))
	return sc, err
}

func multiConfig(a, b *testserver.Server) string {
	return fmt.Sprintf(`user: vpnuser
others: refuse
tunnels:
  - name: routed
    server: %s
    natt-port: %d
    psk: testpsk
    password: $T_PW
    route: [192.168.77.0/24]
  - name: named
    server: %s
    natt-port: %d
    psk-file: %s
    password: vpnpass
    domain: vpn.test
`, a.IKEAddr(), a.NATTAddr().Port(), b.IKEAddr(), b.NATTAddr().Port(), "PSKFILE")
}

// bigLen GETs /big.bin of host through the SOCKS5 proxy and returns its length.
func bigLen(socks net.Addr, host string) (int64, error) {
	pu, _ := url.Parse("socks5h://" + socks.String())
	hc := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(pu), DisableKeepAlives: true}, Timeout: 5 * time.Second}
	resp, err := hc.Get("http://" + host + "/big.bin")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	return io.Copy(io.Discard, resp.Body)
}

// multiRun is serve running the two-tunnel configuration of multiConfig.
type multiRun struct {
	socks, http net.Addr
	log         *syncBuffer
	done        chan error
	cancel      context.CancelFunc
}

// startMulti serves multiConfig(a, b) through `up --config`, reporting to
// m (nil: no monitor) and capturing to capture (nil: none), and waits until
// the proxies listen.
func startMulti(t *testing.T, a, b *testserver.Server, m *monitor, capture func() io.Writer) *multiRun {
	t.Helper()
	t.Setenv("T_PW", "vpnpass")
	pskFile := writeFile(t, "psk", "testpsk\n")
	file := writeFile(t, "multi.yaml", strings.Replace(multiConfig(a, b), "PSKFILE", pskFile, 1))
	r := &multiRun{log: &syncBuffer{}, done: make(chan error, 1)}
	log := slog.New(slog.NewTextHandler(r.log, nil))
	sc, err := parseUp(t, log, "--config", file, "--socks5", "127.0.0.1:0", "--http", "127.0.0.1:0", "--connect-wait", "20s")
	if err != nil {
		t.Fatal(err)
	}
	if len(sc.Tunnels) != 2 || sc.Tunnels[1].Config.User != "vpnuser" || string(sc.Tunnels[0].Config.Password) != "vpnpass" || string(sc.Tunnels[1].Config.PSK) != "testpsk" {
		t.Fatalf("tunnels: %+v", sc.Tunnels)
	}
	sc.Monitor, sc.Tunnel.Capture = m, capture
	var ctx context.Context
	ctx, r.cancel = context.WithCancel(context.Background())
	t.Cleanup(r.cancel)
	ready := make(chan [2]net.Addr, 1)
	sc.Ready = func(s, h net.Addr) { ready <- [2]net.Addr{s, h} }
	go func() { r.done <- serve(ctx, sc) }()
	select {
	case a := <-ready:
		r.socks, r.http = a[0], a[1]
	case err := <-r.done:
		t.Fatalf("serve: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("not ready")
	}
	return r
}

// TestMultiTunnel: two in-process servers, told apart by the size of their
// /big.bin, one taking an address range and one a domain, used at once
// through one SOCKS5 proxy; a destination in neither is refused; the PAC
// file has both; one server restarts and only its tunnel reconnects, the
// other carrying traffic all along.
func TestMultiTunnel(t *testing.T) {
	const sizeA, sizeB = 111111, 222222
	srvA, err := testserver.Start(testserver.Config{BigSize: sizeA})
	if err != nil {
		t.Fatal(err)
	}
	defer srvA.Close()
	srvB, err := testserver.Start(testserver.Config{BigSize: sizeB})
	if err != nil {
		t.Fatal(err)
	}
	mt := startMulti(t, srvA, srvB, nil, nil)
	socks, httpA, logBuf, done, cancel := mt.socks, mt.http, mt.log, mt.done, mt.cancel

	// At once: both tunnels carry a download concurrently.
	var wg sync.WaitGroup
	got := map[string]int64{}
	var mu sync.Mutex
	for _, host := range []string{testserver.ServerIP.String(), testserver.TargetName} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := bigLen(socks, host)
			if err != nil {
				t.Errorf("%s: %v", host, err)
			}
			mu.Lock()
			got[host] = n
			mu.Unlock()
		}()
	}
	wg.Wait()
	if got[testserver.ServerIP.String()] != sizeA || got[testserver.TargetName] != sizeB {
		t.Errorf("sizes %v: want %d through the routed tunnel, %d through the named one", got, sizeA, sizeB)
	}
	if _, err := bigLen(socks, "10.99.0.1"); err == nil {
		t.Error("a destination in no tunnel's routes got through (others: refuse)")
	}
	pac, err := fetch("http", httpA, "http://"+httpA.String()+"/proxy.pac")
	if err != nil || !strings.Contains(pac, `isInNet(ip, "192.168.77.0", "255.255.255.0")`) || !strings.Contains(pac, `dnsDomainIs(host, ".vpn.test")`) {
		t.Errorf("PAC %q, %v", pac, err)
	}

	// Server B restarts: A keeps working while B is down; B comes back.
	srvB.Close()
	// The freed ports are ephemeral ones: another socket of this process (the client's
	// reconnect to B) can take one first (seen once: "bind: address already in use").
	// A few bounded tries, as an administrator's restart would retry.
	var srvB2 *testserver.Server
	for try := 0; ; try++ {
		srvB2, err = testserver.Start(testserver.Config{BigSize: sizeB, IKEAddr: srvB.IKEAddr(), NATTAddr: srvB.NATTAddr()})
		if !errors.Is(err, syscall.EADDRINUSE) || try == 20 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("restarting B: %v", err)
	}
	defer srvB2.Close()
	if n, err := bigLen(socks, testserver.ServerIP.String()); err != nil || n != sizeA {
		t.Errorf("tunnel A while B is down: %d, %v", n, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		n, err := bigLen(socks, testserver.TargetName)
		if err == nil && n == sizeB {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("B did not come back: %d, %v\n%s", n, err, logBuf.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	l := logBuf.String()
	if strings.Count(l, "tunnel went down, reconnecting") != 1 || !strings.Contains(l, `tunnel=named`) {
		t.Errorf("want exactly one reconnect, of the named tunnel; log:\n%s", l)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serve after cancel: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("serve did not return after cancel")
	}
}

// TestMultiTunnelConfigErrors: the list's mistakes are one line, exit 2.
func TestMultiTunnelConfigErrors(t *testing.T) {
	head := "psk: p\nuser: u\npassword: pw\n"
	for _, tc := range []struct{ name, file, want string }{
		{"no routes", head + "tunnels:\n  - server: 192.0.2.1\n", `tunnel "tunnel1" has no route or domain`},
		{"no server", head + "tunnels:\n  - route: 10.0.0.0/8\n", `tunnel "tunnel1": config: no server given`},
		{"top-level server", head + "server: 192.0.2.9\ntunnels:\n  - server: 192.0.2.1\n    route: 10.0.0.0/8\n", "give server in each tunnel"},
		{"unknown key", head + "tunnels:\n  - server: 192.0.2.1\n    socks5: x\n", `unknown setting "tunnels[0].socks5"`},
		{"same name", head + "tunnels:\n  - {name: a, server: 192.0.2.1, route: 10.0.0.0/8}\n  - {name: a, server: 192.0.2.2, route: 10.1.0.0/16}\n", `two are named "a"`},
		{"bad route", head + "tunnels:\n  - {server: 192.0.2.1, route: 10.0.0.0/33}\n", `tunnel "tunnel1": bad route: --route "10.0.0.0/33" is not a CIDR`},
		{"bad port", head + "tunnels:\n  - {server: 192.0.2.1, route: 10.0.0.0/8, natt-port: 70000}\n", "natt-port 70000 is not a UDP port"},
		{"not a list", head + "tunnels: 3\n", "tunnels must be a list"},
		{"both psk", head + "tunnels:\n  - {server: 192.0.2.1, route: 10.0.0.0/8, psk-file: /nonexistent/x}\n", "cannot read --psk-file"}, // psk-file given: the top psk is not inherited; /x cannot be read
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := runCapture(t, "up", "--config", writeFile(t, "c.yaml", tc.file), "--check-config")
			if code != exitConfig || strings.Count(errs, "\n") != 1 || !strings.Contains(errs, tc.want) || out != "" {
				t.Errorf("code %d, stdout %q, stderr %q; want 2 and %q", code, out, errs, tc.want)
			}
		})
	}
	ok := head + "tunnels:\n  - {server: 192.0.2.1, route: 10.0.0.0/8}\n  - {server: 192.0.2.2, domain: corp.example, user: other}\n"
	if code, out, errs := runCapture(t, "up", "--config", writeFile(t, "c.yaml", ok), "--check-config"); code != 0 || !strings.Contains(out, "configuration OK") {
		t.Errorf("good list: %d %q %q", code, out, errs)
	}
	okTOML := "psk = \"p\"\nuser = \"u\"\npassword = \"pw\"\n[[tunnels]]\nserver = \"192.0.2.1\"\nroute = [\"10.0.0.0/8\"]\nnatt-port = 4501\n[[tunnels]]\nserver = \"192.0.2.2\"\ndomain = \"corp.example\"\nconnect-timeout = \"10s\"\n"
	if code, out, errs := runCapture(t, "up", "--config", writeFile(t, "c.toml", okTOML), "--check-config"); code != 0 || !strings.Contains(out, "configuration OK") {
		t.Errorf("good TOML list: %d %q %q", code, out, errs)
	}
	code, out, _ := runCapture(t, "up", "--config", writeFile(t, "c.yaml", ok), "--print-config")
	if code != 0 || !strings.Contains(out, "tunnels:\n  - route: [\"10.0.0.0/8\"]\n    server: \"192.0.2.1\"\n") || strings.Contains(out, "pw") {
		t.Errorf("print-config:\n%s", out)
	}
}
