package proxy

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"testing"

	"github.com/l2tpproxy/l2tpproxy/netstack"
)

// TestThroughNetstack runs both proxies over two back-to-back gVisor stacks
// (netstack.Pipe): the proxies dial through stack A, the servers listen on
// stack B.
func TestThroughNetstack(t *testing.T) {
	addrA, addrB := netip.MustParseAddr("10.77.0.1"), netip.MustParseAddr("10.77.0.2")
	a, b, err := netstack.Pipe(
		netstack.Config{LocalAddr: addrA, MTU: 1280, Headroom: 48, Tailroom: 32},
		netstack.Config{LocalAddr: addrB, MTU: 1280},
	)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	defer b.Close()

	// Hash-echo server on B:7.
	echoLn, err := b.ListenTCP(netip.AddrPortFrom(addrB, 7))
	if err != nil {
		t.Fatal(err)
	}
	defer echoLn.Close()
	go func() {
		for {
			c, err := echoLn.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				h := sha256.New()
				if _, err := io.Copy(h, c); err == nil {
					io.WriteString(c, hex.EncodeToString(h.Sum(nil)))
				}
			}()
		}
	}()
	// HTTP server on B:80.
	httpLn, err := b.ListenTCP(netip.AddrPortFrom(addrB, 80))
	if err != nil {
		t.Fatal(err)
	}
	go http.Serve(httpLn, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from %s via %s", r.Host, r.RemoteAddr)
	}))
	defer httpLn.Close()

	res := &mapResolver{m: map[string]netip.Addr{"far.internal": addrB}}
	socksAddr := startServe(t, NewSOCKS5(a, res, nil).Serve)
	httpAddr := startServe(t, NewHTTP(a, nil).Serve)

	c, rep := socksConnect(t, socksAddr, "far.internal", 7)
	if rep != 0 {
		t.Fatalf("SOCKS reply %d", rep)
	}
	hashRoundTrip(t, c, randBytes(t, 1<<20))
	c.Close()

	c, resp, _ := connectViaHTTP(t, httpAddr, net.JoinHostPort(addrB.String(), "7"))
	if resp.StatusCode != 200 {
		t.Fatalf("CONNECT %d", resp.StatusCode)
	}
	hashRoundTrip(t, c, randBytes(t, 1<<20))
	c.Close()

	r2, err := proxyClient(httpAddr).Get("http://10.77.0.2/x")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(r2.Body)
	r2.Body.Close()
	if want := "hello from 10.77.0.2 via 10.77.0.1:"; len(body) < len(want) || string(body[:len(want)]) != want {
		t.Fatalf("GET body %q", body)
	}

	// Refused through the stack (RST from B) -> SOCKS reply 5, HTTP 502.
	c, rep = socksConnect(t, socksAddr, "far.internal", 9)
	c.Close()
	if rep != 5 {
		t.Errorf("SOCKS to closed port via netstack: reply %d, want 5", rep)
	}
	c, resp, _ = connectViaHTTP(t, httpAddr, "10.77.0.2:9")
	c.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("CONNECT to closed port via netstack: %d, want 502", resp.StatusCode)
	}
}
