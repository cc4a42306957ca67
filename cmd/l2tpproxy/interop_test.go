//go:build interop

// Interop tests against a real L2TP/IPsec server brought up by
// testdata/interop (SoftEther in a netns, Libreswan or strongSwan in a VM).
// They run the built binary as an unprivileged user, as our users do.
//
//	L2TPPROXY_INTEROP_ENV=<file of KEY=VALUE lines printed by an `up` script>
//	L2TPPROXY_BIN=<path to the l2tpproxy binary>
//	go test -tags interop -run TestInterop ./cmd/l2tpproxy
//
// testdata/interop/run does all of this for every server.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

type peer map[string]string

// label names the server in result lines, e.g. "softether/strict" or "libreswan/hwdsl2".
func (p peer) label() string {
	l := p["SERVER_KIND"]
	for _, k := range []string{"MODE", "AUTH"} {
		if p[k] != "" {
			l += "/" + p[k]
		}
	}
	return l
}

func loadPeer(t *testing.T) peer {
	path := os.Getenv("L2TPPROXY_INTEROP_ENV")
	if path == "" {
		t.Skip("L2TPPROXY_INTEROP_ENV not set: run `make interop` (root) to test against real servers")
	}
	return loadPeerFile(t, path)
}

// loadPeerFile reads the KEY=VALUE lines an `up` script printed to path.
func loadPeerFile(t *testing.T, path string) peer {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	p := peer{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok {
			p[k] = v
		}
	}
	for _, k := range []string{"SERVER", "IKE_PORT", "NATT_PORT", "PSK", "VPN_USER", "VPN_PASSWORD", "HELLO_URL", "BIG_URL", "BIG_SHA256", "UPLOAD_URL", "TARGET_NAME"} {
		if p[k] == "" {
			t.Fatalf("%s: no %s", path, k)
		}
	}
	return p
}

func binary(t *testing.T) string {
	bin := os.Getenv("L2TPPROXY_BIN")
	if bin == "" {
		t.Fatal("L2TPPROXY_BIN not set")
	}
	abs, err := filepath.Abs(bin)
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

// proc is one running l2tpproxy.
type proc struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	stderr bytes.Buffer
	lines  chan string
	done   chan struct{}
	err    error
	peer   peer // whose log a failure prints (peerLogTail)
}

// command is the binary run with args and the peer's settings in the
// environment (the secrets never appear on a command line), as uid 65534
// when we are root.
func command(t *testing.T, p peer, edit func(env map[string]string), args ...string) *exec.Cmd {
	env := map[string]string{
		"L2TPPROXY_SERVER":    net.JoinHostPort(p["SERVER"], p["IKE_PORT"]),
		"L2TPPROXY_NATT_PORT": p["NATT_PORT"],
		"L2TPPROXY_PSK":       p["PSK"],
		"L2TPPROXY_USER":      p["VPN_USER"],
		"L2TPPROXY_PASSWORD":  p["VPN_PASSWORD"],
	}
	if p["PPP_AUTH"] != "" { // a server that needs a method outside the default policy
		env["L2TPPROXY_PPP_AUTH"] = p["PPP_AUTH"]
	}
	if p["IKE_MODE"] != "" { // a server that accepts only Aggressive Mode, and its identity
		env["L2TPPROXY_IKE_MODE"] = p["IKE_MODE"]
	}
	if p["REMOTE_ID"] != "" {
		env["L2TPPROXY_REMOTE_ID"] = p["REMOTE_ID"]
	}
	if p["LOCAL_ID"] != "" {
		env["L2TPPROXY_LOCAL_ID"] = p["LOCAL_ID"]
	}
	if p["CERT_FILE"] != "" { // a certificate-only server (MODE=cert): no PSK
		delete(env, "L2TPPROXY_PSK")
		env["L2TPPROXY_CERT"], env["L2TPPROXY_KEY"], env["L2TPPROXY_CA"] = p["CERT_FILE"], p["KEY_FILE"], p["CA_FILE"]
		env["L2TPPROXY_REMOTE_ID"] = p["REMOTE_ID"]
	}
	if edit != nil {
		edit(env)
	}
	argv := append([]string{binary(t)}, args...)
	if os.Geteuid() == 0 {
		// Prove that no privilege is needed: nobody, no capabilities.
		argv = append([]string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--"}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	return cmd
}

// start runs `l2tpproxy up args...` with command's settings.
func start(t *testing.T, p peer, edit func(env map[string]string), args ...string) *proc {
	cmd := command(t, p, edit, append([]string{"up"}, args...)...)
	pr, pw := io.Pipe()
	pc := &proc{cmd: cmd, lines: make(chan string, 1000), done: make(chan struct{}), peer: p}
	cmd.Stderr = pw
	cmd.Stdout = pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			line := sc.Text()
			pc.mu.Lock()
			pc.stderr.WriteString(line + "\n")
			pc.mu.Unlock()
			select {
			case pc.lines <- line:
			default:
			}
		}
	}()
	go func() {
		pc.err = cmd.Wait()
		pw.Close()
		<-scanned // done means every line the process wrote has been read
		close(pc.done)
	}()
	t.Cleanup(func() {
		pc.cmd.Process.Signal(os.Interrupt)
		select {
		case <-pc.done:
		case <-time.After(10 * time.Second):
			pc.cmd.Process.Kill()
		}
	})
	return pc
}

func (pc *proc) output() string {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	return pc.stderr.String()
}

// waitFor waits for a log line matching re, or the process to end.
func (pc *proc) waitFor(t *testing.T, re *regexp.Regexp, timeout time.Duration) string {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case line := <-pc.lines:
			if re.MatchString(line) {
				return line
			}
		case <-pc.done:
			t.Fatalf("l2tpproxy exited (%v) before %q:\n%s%s", pc.err, re, pc.output(), peerLogTail(pc.peer))
		case <-deadline:
			t.Fatalf("no %q within %v:\n%s%s", re, timeout, pc.output(), peerLogTail(pc.peer))
		}
	}
}

// drain discards the log lines not yet read, so that waitFor sees only
// what the process logs from now on.
func (pc *proc) drain() {
	for {
		select {
		case <-pc.lines:
		default:
			return
		}
	}
}

var (
	deletedSPI = regexp.MustCompile(`IPsec SA deleted by the server.* spi_in=([0-9a-f]{8})`)
	rekeyedSPI = regexp.MustCompile(`IPsec SA rekeyed.* spi_in=([0-9a-f]{8})`)
)

// waitNewSA waits until the log after offset from has a server Delete and,
// after the first one, an installed IPsec SA whose SPI no Delete since from
// names: the SA the tunnel uses then is one the server still has. It says
// who started it: "ours" when our renewal ("negotiating a new one") came
// between that Delete and it, else "the server's".
func waitNewSA(t *testing.T, pc *proc, from int, timeout time.Duration) (spi, by string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		out := pc.output()[from:]
		deleted := map[string]bool{}
		for _, m := range deletedSPI.FindAllStringSubmatch(out, -1) {
			deleted[m[1]] = true
		}
		if first := deletedSPI.FindStringIndex(out); first != nil {
			after := out[first[1]:]
			for _, m := range rekeyedSPI.FindAllStringSubmatchIndex(after, -1) {
				if s := after[m[2]:m[3]]; !deleted[s] {
					by = "the server's"
					if strings.Contains(after[:m[0]], "negotiating a new one") {
						by = "ours"
					}
					return s, by
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no IPsec SA that the server did not delete within %v after its Delete (deleted: %v):\n%s", timeout, deleted, pc.output())
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// getHello fetches the peer's HELLO_URL through proxy on a new connection.
func (pc *proc) getHello(t *testing.T, p peer, proxy *url.URL, when string) {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxy), DisableKeepAlives: true}, Timeout: 30 * time.Second}
	resp, err := hc.Get(p["HELLO_URL"])
	if err != nil {
		t.Fatalf("%s: %v\n%s", when, err, pc.output())
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

func freePort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func TestInterop(t *testing.T) {
	p := loadPeer(t)
	socks, httpAddr, adminAddr := freePort(t), freePort(t), freePort(t)
	// A -L port forward to the hello page's host and port, by the target's name.
	helloURL, err := url.Parse(p["HELLO_URL"])
	if err != nil {
		t.Fatal(err)
	}
	fwdAddr := freePort(t)
	fwdTo := net.JoinHostPort(p["TARGET_NAME"], or(helloURL.Port(), "80"))
	began := time.Now()
	pc := start(t, p, nil, "--socks5", socks, "--http", httpAddr, "--admin", adminAddr, "--log-level", "info", "-L", fwdAddr+":"+fwdTo)
	pc.waitFor(t, regexp.MustCompile(`HTTP proxy listening`), 90*time.Second)
	t.Logf("connected in %v (process start to proxies listening)", time.Since(began).Round(time.Millisecond))
	if m := regexp.MustCompile(`connect_time=(\S+)`).FindStringSubmatch(pc.output()); m != nil {
		t.Logf("CONNECT_TIME %s %s", p.label(), m[1])
	}
	for _, layer := range []string{"IKE SA established", "IPsec SA established", "L2TP tunnel established", "L2TP session established", "PPP authenticated", "IPCP up"} {
		found := false
		for _, line := range strings.Split(pc.output(), "\n") {
			if strings.Contains(line, layer) {
				t.Logf("PROGRESS %s", line)
				found = true
			}
		}
		if !found {
			t.Errorf("no progress line %q", layer)
		}
	}
	// The PPP method the server allows (the up script says which).
	if m := p["PPP_METHOD"]; m != "" && !regexp.MustCompile(`(?m)PPP authenticated.* method=`+regexp.QuoteMeta(m)+`( |$)`).MatchString(pc.output()) {
		t.Errorf("the server allows only %s, but the log shows another method:\n%s", m, pc.output())
	}
	// A server that requires PFS refuses our first Quick Mode; we retry with it.
	pfsGroup := p["PFS_GROUP"] // the phase-1 group, which PFS reuses
	if pfsGroup == "" {
		pfsGroup = "MODP2048"
	}
	if p["PFS"] == "yes" {
		if !strings.Contains(pc.output(), "retrying with PFS") || !strings.Contains(pc.output(), "pfs="+pfsGroup) {
			t.Errorf("the server requires PFS, but the log shows no retry with PFS:\n%s", pc.output())
		}
	} else if !strings.Contains(pc.output(), "pfs=none") {
		t.Errorf("PFS used though the server does not require it:\n%s", pc.output())
	}
	// A server that accepts only one DH group (IKE_GROUP): our default offer must reach it.
	if g := p["IKE_GROUP"]; g != "" && !regexp.MustCompile(`IKE SA established.*suite=\S*/`+g+`\b`).MatchString(pc.output()) {
		t.Errorf("the server accepts only %s, but the IKE SA has another group:\n%s", g, pc.output())
	}
	for _, secret := range []string{p["PSK"], p["VPN_PASSWORD"]} {
		if strings.Contains(pc.output(), secret) {
			t.Fatalf("a secret appears in the log")
		}
	}

	// The admin endpoint: ready, and a scrape parsed by Prometheus' parser.
	admin := adminClient{base: "http://" + adminAddr}
	if code, body := admin.get(t, "/readyz"); code != 200 {
		t.Errorf("/readyz with the tunnel up: %d %q", code, body)
	}
	before := admin.scrape(t)

	socksURL, _ := url.Parse("socks5h://" + socks)
	httpURL, _ := url.Parse("http://" + httpAddr)
	interopIPv6(t, p, pc, map[string]*url.URL{"socks5": socksURL, "http": httpURL})
	bigSize, _ := strconv.ParseInt(p["BIG_SIZE"], 10, 64)
	for _, via := range []struct {
		name string
		u    *url.URL
	}{{"socks5", socksURL}, {"http", httpURL}} {
		t.Run(via.name, func(t *testing.T) {
			hc := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(via.u)}, Timeout: 10 * time.Minute}
			defer hc.CloseIdleConnections()

			// By name: resolved by the VPN's DNS, on the far side.
			hello := strings.Replace(p["HELLO_URL"], p["TARGET_IP"], p["TARGET_NAME"], 1)
			resp, err := hc.Get(hello)
			if err != nil {
				t.Fatalf("GET %s: %v", hello, err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || len(body) == 0 {
				t.Fatalf("GET %s: %d %q", hello, resp.StatusCode, body)
			}

			start := time.Now()
			resp, err = hc.Get(p["BIG_URL"])
			if err != nil {
				t.Fatalf("GET big: %v\n%s%s", err, pc.output(), peerLogTail(p))
			}
			h := sha256.New()
			n, err := io.Copy(h, resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatalf("reading big after %d bytes: %v\n%s%s", n, err, pc.output(), peerLogTail(p))
			}
			if got := hex.EncodeToString(h.Sum(nil)); got != p["BIG_SHA256"] || (bigSize != 0 && n != bigSize) {
				t.Fatalf("big: %d bytes sha256 %s, want %s %s", n, got, p["BIG_SIZE"], p["BIG_SHA256"])
			}
			d := time.Since(start)
			t.Logf("THROUGHPUT download %s %s: %d bytes in %v = %.1f MiB/s", p.label(), via.name, n, d.Round(time.Millisecond), float64(n)/d.Seconds()/(1<<20))

			up := make([]byte, 16<<20)
			rand.Read(up)
			start = time.Now()
			resp, err = hc.Post(p["UPLOAD_URL"], "application/octet-stream", bytes.NewReader(up))
			if err != nil {
				t.Fatalf("POST upload: %v\n%s%s", err, pc.output(), peerLogTail(p))
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			sum := sha256.Sum256(up)
			want := fmt.Sprintf("%d %x", len(up), sum)
			if strings.TrimSpace(string(got)) != want {
				t.Fatalf("upload: server says %q, want %q", got, want)
			}
			d = time.Since(start)
			t.Logf("THROUGHPUT upload %s %s: %d bytes in %v = %.1f MiB/s", p.label(), via.name, len(up), d.Round(time.Millisecond), float64(len(up))/d.Seconds()/(1<<20))
		})
	}

	// The downloads moved the ESP, PPP and IP byte counters (2 x BIG_SIZE
	// at least, inbound), and each proxy counted its connections.
	after := admin.scrape(t)
	for _, layer := range []string{"esp", "ppp", "ip"} {
		in := after.value(t, "l2tpproxy_bytes_total", "layer="+layer, "direction=in") - before.value(t, "l2tpproxy_bytes_total", "layer="+layer, "direction=in")
		out := after.value(t, "l2tpproxy_bytes_total", "layer="+layer, "direction=out") - before.value(t, "l2tpproxy_bytes_total", "layer="+layer, "direction=out")
		if in < float64(2*bigSize) || out < 2*16<<20 {
			t.Errorf("%s bytes grew by %.0f in, %.0f out during two downloads of %d bytes and two uploads of 16 MiB", layer, in, out, bigSize)
		}
		t.Logf("METRICS %s %s: %.0f bytes in, %.0f out during the transfers", p.label(), layer, in, out)
	}
	for _, proxy := range []string{"socks5", "http"} {
		if after.value(t, "l2tpproxy_proxy_connections_total", "proxy="+proxy) < 1 {
			t.Errorf("no %s connection counted", proxy)
		}
	}

	t.Run("local-forward", func(t *testing.T) {
		hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 30 * time.Second}
		u := "http://" + fwdAddr + helloURL.RequestURI()
		resp, err := hc.Get(u)
		if err != nil {
			t.Fatalf("GET %s (-L %s:%s): %v", u, fwdAddr, fwdTo, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || strings.TrimSpace(string(body)) != strings.TrimSpace(helloBody(p)) {
			t.Fatalf("GET %s: %d %q, want %q", u, resp.StatusCode, body, helloBody(p))
		}
		t.Logf("FORWARD -L %s:%s %s: %d bytes", fwdAddr, fwdTo, p.label(), len(body))
	})

	// Idle: the server's keepalives (DPD, L2TP HELLO, LCP echo) must be
	// answered and ours sent, or the server drops the tunnel. Long enough for
	// Libreswan's 30 s DPD and xl2tpd's 60 s HELLO.
	if idle, _ := time.ParseDuration(os.Getenv("L2TPPROXY_INTEROP_IDLE")); idle > 0 {
		t.Run("idle", func(t *testing.T) {
			time.Sleep(idle)
			pc.getHello(t, p, socksURL, fmt.Sprintf("after %v idle", idle))
			if strings.Contains(pc.output(), "tunnel went down") {
				t.Fatalf("the tunnel went down while idle:\n%s", pc.output())
			}
			t.Logf("still up after %v idle", idle)
		})
	}

	// The server takes our IPsec SA down but keeps the ISAKMP SA (Libreswan's
	// whack --deletestate, strongSwan's swanctl --terminate --child): the
	// client negotiates a new one by itself, without a reconnect. Only the VM
	// servers have a control channel for this.
	if p["VM_CTL"] != "" {
		t.Run("ipsec-sa-deleted", func(t *testing.T) {
			// Only what the client logs from now on counts: a server that rekeys on its own
			// (REKEY=server) logs rekeys and Deletes all the time.
			pc.drain()
			from := len(pc.output())
			began := time.Now()
			rc, log := vmRequest(t, p, "delete-child", 60*time.Second)
			if rc != "0" {
				t.Fatalf("the server could not delete the IPsec SA (rc %s):\n%s", rc, log)
			}
			defer func() {
				if t.Failed() {
					t.Logf("the server's SAs before, and its delete:\n%s", log)
				}
			}()
			pc.waitFor(t, regexp.MustCompile(`IPsec SA deleted by the server`), 30*time.Second)
			if p["REKEY"] != "server" {
				pc.waitFor(t, regexp.MustCompile(`negotiating a new one`), 30*time.Second)
			}
			// The SA that carries our traffic from now on must be one the server did not delete:
			// ours after the renewal, or, from a server that rekeys every few seconds, the one
			// its own Quick Mode brought meanwhile (its Quick Mode may be under way when it
			// deletes ours: then we have an SA again before our renewal is due, and need none).
			spi, by := waitNewSA(t, pc, from, 60*time.Second)
			t.Logf("RENEWAL %s: new IPsec SA %s (%s) %v after we asked the server to delete ours", p.label(), spi, by, time.Since(began).Round(time.Millisecond))
			pc.getHello(t, p, socksURL, "through the new SA")
			if strings.Contains(pc.output(), "tunnel went down") {
				t.Fatalf("the tunnel went down instead:\n%s", pc.output())
			}
		})
	}

	// The server ends the IKE SA. Libreswan deletes the ISAKMP SA alone (as
	// when its lifetime ends): the client negotiates a new IKE SA in place
	// and an open connection survives. strongSwan terminates the whole IKE
	// SA, IPsec SA included: `up` reconnects and the proxy works again.
	if p["VM_CTL"] != "" {
		t.Run("ike-sa-deleted", func(t *testing.T) {
			var reused bool
			trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }}
			hc := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(socksURL)}, Timeout: 30 * time.Second}
			defer hc.CloseIdleConnections()
			get := func(when string) {
				t.Helper()
				req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", p["HELLO_URL"], nil)
				resp, err := hc.Do(req)
				if err != nil {
					t.Fatalf("%s: %v\n%s", when, err, pc.output())
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			get("before")
			began := time.Now()
			rc, log := vmRequest(t, p, "delete-ike", 60*time.Second)
			if rc != "0" {
				t.Fatalf("the server could not delete the IKE SA (rc %s):\n%s", rc, log)
			}
			if p["SERVER_KIND"] == "libreswan" {
				pc.waitFor(t, regexp.MustCompile(`negotiating a new IKE SA, the tunnel stays up`), 30*time.Second)
				pc.waitFor(t, regexp.MustCompile(`IPsec SA rekeyed`), 60*time.Second)
				t.Logf("RENEWAL %s: new IKE and IPsec SA %v after we asked the server to delete the IKE SA", p.label(), time.Since(began).Round(time.Millisecond))
				get("after")
				if !reused {
					t.Error("the connection opened before did not carry the request after")
				}
				if strings.Contains(pc.output(), "tunnel went down") {
					t.Fatalf("the tunnel went down instead:\n%s", pc.output())
				}
				return
			}
			pc.waitFor(t, regexp.MustCompile(`tunnel went down, reconnecting`), 30*time.Second)
			pc.waitFor(t, regexp.MustCompile(`tunnel up`), 60*time.Second)
			t.Logf("RENEWAL %s: reconnected %v after we asked the server to terminate the IKE SA", p.label(), time.Since(began).Round(time.Millisecond))
			hc.CloseIdleConnections()
			get("after the reconnect")
		})
	}

	// SoftEther's administrator disconnects our session (vpncmd
	// SessionDisconnect: the server sends a CDN): `up` reconnects by itself.
	if kick := p["KICK"]; kick != "" {
		t.Run("server-kicks", func(t *testing.T) {
			began := time.Now()
			out, err := exec.Command(kick).CombinedOutput()
			if err != nil {
				t.Fatalf("%s: %v\n%s", kick, err, out)
			}
			pc.waitFor(t, regexp.MustCompile(`tunnel went down, reconnecting`), 30*time.Second)
			pc.waitFor(t, regexp.MustCompile(`tunnel up`), 60*time.Second)
			t.Logf("RENEWAL %s: reconnected %v after the server disconnected our session", p.label(), time.Since(began).Round(time.Millisecond))
			pc.getHello(t, p, socksURL, "after the reconnect")
			// The -L listener outlives the tunnel it was opened with.
			resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 30 * time.Second}).Get("http://" + fwdAddr + helloURL.RequestURI())
			if err != nil {
				t.Fatalf("-L after the reconnect: %v", err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if strings.TrimSpace(string(body)) != strings.TrimSpace(helloBody(p)) {
				t.Fatalf("-L after the reconnect: %d %q", resp.StatusCode, body)
			}
			t.Logf("FORWARD -L %s after the reconnect: %d bytes", p.label(), len(body))
		})
	}

	// What the renewals and reconnects above did is counted.
	final := admin.scrape(t)
	for _, c := range []struct {
		name string
		ran  bool
	}{{"l2tpproxy_esp_deleted_by_server_total", p["VM_CTL"] != ""}, {"l2tpproxy_esp_rekeys_total", p["VM_CTL"] != ""}} {
		if v := final.value(t, c.name); c.ran && v < 1 {
			t.Errorf("%s = %v after the server deleted our IPsec SA", c.name, v)
		}
	}
	var reconnects float64
	for _, m := range final["l2tpproxy_reconnects_total"].GetMetric() {
		reconnects += m.GetCounter().GetValue()
	}
	if expect := p["KICK"] != "" || (p["VM_CTL"] != "" && p["SERVER_KIND"] != "libreswan"); expect && reconnects < 1 {
		t.Errorf("reconnects_total %v after the server ended our tunnel", reconnects)
	}
	t.Logf("METRICS %s: esp drops %v, rekeys %v, reconnects %v", p.label(),
		final.value(t, "l2tpproxy_esp_dropped_packets_total", "reason=replay")+final.value(t, "l2tpproxy_esp_dropped_packets_total", "reason=auth")+final.value(t, "l2tpproxy_esp_dropped_packets_total", "reason=unknown_spi"),
		final.value(t, "l2tpproxy_esp_rekeys_total"), reconnects)

	// SIGINT tears down in order and exits 0.
	pc.cmd.Process.Signal(os.Interrupt)
	select {
	case <-pc.done:
		if pc.err != nil {
			t.Errorf("exit after SIGINT: %v\n%s", pc.err, pc.output())
		}
	case <-time.After(15 * time.Second):
		t.Errorf("no exit within 15 s of SIGINT")
	}
}

// TestInteropBadCredentials: a wrong PSK and a wrong password each give one
// line naming the problem and a non-zero exit within 10 s.
func TestInteropBadCredentials(t *testing.T) {
	p := loadPeer(t)
	cases := []struct {
		name string
		edit func(map[string]string)
		want *regexp.Regexp
		code int
	}{
		{"psk", func(e map[string]string) { e["L2TPPROXY_PSK"] = "wrong-psk-XyZ" }, regexp.MustCompile(`(?i)IKE.*(pre-shared key|PSK)`), exitIKE},
		{"password", func(e map[string]string) { e["L2TPPROXY_PASSWORD"] = "wrong-password-XyZ" }, regexp.MustCompile(`(?i)PPP.*(authenticat).*password`), exitPPP},
	}
	if p["PPP_AUTH"] == "pap" {
		// Without --ppp-auth pap the default policy refuses the PAP-only server, naming PAP and the flag.
		cases = append(cases, struct {
			name string
			edit func(map[string]string)
			want *regexp.Regexp
			code int
		}{"default-ppp-auth", func(e map[string]string) { delete(e, "L2TPPROXY_PPP_AUTH") },
			regexp.MustCompile(`PPP: .*the server requires PAP, which the authentication policy does not allow.*\(add pap to --ppp-auth; PAP sends the password in clear`), exitPPP})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// Debug logging, so that a slow or hung failure shows which
			// exchange stalled; the secrets check below then covers the
			// debug lines too.
			began := time.Now()
			pc := start(t, p, tc.edit, "--socks5", freePort(t), "--http", freePort(t), "--log-level", "debug")
			select {
			case <-pc.done:
			case <-time.After(badCredentialsBound):
				pc.cmd.Process.Signal(os.Interrupt)
				select {
				case <-pc.done:
				case <-time.After(5 * time.Second):
				}
				t.Fatalf("still running after %v (the client bounds a connect by 30 s):\n%s%s",
					badCredentialsBound, pc.output(), peerLogTail(p))
			}
			took := time.Since(began)
			t.Logf("failed in %v", took.Round(time.Millisecond))
			out := pc.output()
			if took > 10*time.Second {
				// Within the bound, but slower than a server that answers
				// promptly needs: keep what happened for the record.
				t.Logf("slow failure:\n%s%s", out, peerLogTail(p))
			}
			lines := strings.Split(strings.TrimSpace(out), "\n")
			last := lines[len(lines)-1]
			if !strings.HasPrefix(last, "l2tpproxy: ") || !tc.want.MatchString(last) {
				t.Errorf("last line %q does not match %v\n%s", last, tc.want, out)
			}
			code := -1
			if ee, ok := pc.err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			}
			if code != tc.code {
				t.Errorf("exit code %d, want %d", code, tc.code)
			}
			if strings.Contains(out, "XyZ") || strings.Contains(out, p["PSK"]) || strings.Contains(out, p["VPN_PASSWORD"]) {
				t.Errorf("a secret appears in the output")
			}
		})
	}
}

// badCredentialsBound is how long a rejected login may take to end `up`:
// the client's connect bound (tunnel.Config.ConnectTimeout, 30 s) and a
// margin. A server that answers promptly fails us in well under a second
// (a wrong password) or after the IKE retransmissions (a wrong PSK, ~7 s).
const badCredentialsBound = 40 * time.Second

// peerLogTail is the end of the server's own log, when the peer names one
// (SoftEther's VPNSERVER_LOG, the VM's pluto.log or charon.log), for a
// failure message.
func peerLogTail(p peer) string {
	var names []string
	if name := p["VPNSERVER_LOG"]; name != "" {
		names = append(names, name)
	}
	if dir := p["VM_LOGS"]; len(names) == 0 && dir != "" {
		ike := "pluto.log" // Libreswan
		if p["SERVER_KIND"] == "strongswan" {
			ike = "charon.log"
		}
		// The LNS too: a tunnel the server dropped says why only there.
		names = append(names, filepath.Join(dir, ike), filepath.Join(dir, "xl2tpd-server.log"))
	}
	var out strings.Builder
	for _, name := range names {
		b, err := os.ReadFile(name)
		if err != nil {
			out.WriteString("\n(server log: " + err.Error() + ")")
			continue
		}
		const max = 8 << 10
		if len(b) > max {
			b = b[len(b)-max:]
		}
		out.WriteString("\n--- end of " + name + " ---\n" + string(b))
	}
	return out.String()
}

// vmRequest asks the server VM's init to run a request (see
// testdata/interop/linuxvm/guest/init.sh) and returns its exit code and log.
func vmRequest(t *testing.T, p peer, what string, timeout time.Duration) (rc, log string) {
	t.Helper()
	id := fmt.Sprintf("it%d", time.Now().UnixNano())
	tmp := filepath.Join(p["VM_CTL"], id+".req.tmp")
	if err := os.WriteFile(tmp, []byte(what+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(p["VM_CTL"], id+".req")); err != nil {
		t.Fatal(err)
	}
	rcFile := filepath.Join(p["VM_LOGS"], what+"-"+id+".rc")
	deadline := time.Now().Add(timeout)
	for {
		if b, err := os.ReadFile(rcFile); err == nil && len(b) > 0 {
			l, _ := os.ReadFile(filepath.Join(p["VM_LOGS"], what+"-"+id+".log"))
			return strings.TrimSpace(string(b)), string(l)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the VM did not run %q within %v", what, timeout)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
