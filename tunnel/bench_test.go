package tunnel_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"testing"

	"github.com/l2tpproxy/l2tpproxy/tunnel/testserver"
)

// BenchmarkEndToEnd moves data through the whole client (gVisor, PPP,
// L2TP, ESP, UDP on loopback) to the in-process test server and back. Both
// ends run in this process, so ns/op and CPU include the server; the
// client-only figure is testdata/bench/e2e's.
func BenchmarkEndToEnd(b *testing.B) {
	const size = 8 << 20
	srv := startServer(b, testserver.Config{BigSize: size})
	c := dial(b, clientConfig(b, srv))
	hc := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return c.DialContext(ctx, network, addr)
		},
	}}
	b.Run("download", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			resp, err := hc.Get(srv.URL("/big.bin"))
			if err != nil {
				b.Fatal(err)
			}
			n, err := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err != nil || n != size {
				b.Fatalf("got %d bytes, err %v", n, err)
			}
		}
	})
	b.Run("upload", func(b *testing.B) {
		body := make([]byte, size)
		b.SetBytes(size)
		for b.Loop() {
			resp, err := hc.Post(srv.URL("/upload"), "application/octet-stream", bytes.NewReader(body))
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Fatalf("status %s", resp.Status)
			}
		}
	})
}
