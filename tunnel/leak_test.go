package tunnel_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/l2tpproxy/l2tpproxy/tunnel"
	"github.com/l2tpproxy/l2tpproxy/tunnel/testserver"
)

// TestMain fails the package if any goroutine outlives the tests.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// checkNoLeaks registers, first, a check that runs after every later
// cleanup of t (LIFO): the client and the server are closed by then, and no
// goroutine may be left that was not running when the test began.
func checkNoLeaks(t testing.TB) {
	t.Helper()
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, before) })
}

// tunnelGoroutines returns the stacks of goroutines that carry the tunnel
// supervisor's pprof label (every goroutine a Client started, and those
// they started: layer timers, the network stack's workers).
func tunnelGoroutines() []string {
	var buf bytes.Buffer
	pprof.Lookup("goroutine").WriteTo(&buf, 1)
	var left []string
	for _, g := range strings.Split(buf.String(), "\n\n") {
		if strings.Contains(g, `"l2tpproxy.tunnel":`) {
			left = append(left, g)
		}
	}
	return left
}

// TestCloseLeavesNothing: when Close returns, no goroutine of the tunnel is
// running any more: checked at once (not after a grace period) through the
// supervisor's goroutine label, after a tunnel that carried DNS, TCP and
// UDP; and the same after a Dial that failed (wrong PSK, wrong password).
func TestCloseLeavesNothing(t *testing.T) {
	checkNoLeaks(t)
	srv := startServer(t, testserver.Config{})
	if left := tunnelGoroutines(); len(left) != 0 {
		t.Fatalf("tunnel goroutines before Dial:\n%s", strings.Join(left, "\n\n"))
	}
	c, err := tunnel.Dial(context.Background(), clientConfig(t, srv))
	if err != nil {
		t.Fatal(err)
	}
	if len(tunnelGoroutines()) == 0 {
		t.Fatal("no labelled goroutine while the tunnel is up: the check below could not fail")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.LookupHost(ctx, testserver.TargetName); err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		return c.DialContext(ctx, network, addr)
	}}
	resp, err := (&http.Client{Transport: tr, Timeout: 30 * time.Second}).Get(srv.URL("/hello.txt"))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	tr.CloseIdleConnections()
	u, err := c.DialContext(ctx, "udp", net.JoinHostPort(testserver.ServerIP.String(), "7"))
	if err != nil {
		t.Fatal(err)
	}
	u.Write([]byte("x"))
	u.Close()

	if err := c.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if left := tunnelGoroutines(); len(left) != 0 {
		t.Errorf("%d tunnel goroutines still running when Close returned:\n%s", len(left), strings.Join(left, "\n\n"))
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}

	for name, mod := range map[string]func(*tunnel.Config){
		"wrong PSK":      func(c *tunnel.Config) { c.PSK = []byte("wrong") },
		"wrong password": func(c *tunnel.Config) { c.Password = []byte("wrong") },
	} {
		cfg := clientConfig(t, srv)
		mod(&cfg)
		if c, err := tunnel.Dial(context.Background(), cfg); err == nil {
			c.Close()
			t.Fatalf("%s: Dial succeeded", name)
		}
		if left := tunnelGoroutines(); len(left) != 0 {
			t.Errorf("%s: %d tunnel goroutines still running when Dial returned:\n%s", name, len(left), strings.Join(left, "\n\n"))
		}
	}
}
