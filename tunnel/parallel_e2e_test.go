package tunnel_test

import (
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"testing"
	"time"

	"github.com/l2tpproxy/l2tpproxy/tunnel/ike"
	"github.com/l2tpproxy/l2tpproxy/tunnel/testserver"
)

// TestParallelDecrypt downloads through an AES-CBC + HMAC-SHA1 SA with
// ParallelDecrypt on: the data arrives intact (the worker's packets
// delivered in order among the reader's), the worker took part, and Close
// stops it (startServer's leak check).
func TestParallelDecrypt(t *testing.T) {
	if runtime.GOMAXPROCS(0) < 2 {
		t.Skip("the crypto worker needs GOMAXPROCS >= 2")
	}
	p2, err := ike.ParsePhase2("aes128-sha1")
	if err != nil {
		t.Fatal(err)
	}
	const size = 16 << 20
	srv := startServer(t, testserver.Config{Phase2: p2, BigSize: size})
	cfg := clientConfig(t, srv)
	cfg.Phase2 = p2
	cfg.ParallelDecrypt = true
	c := dial(t, cfg)
	hc := &http.Client{Transport: &http.Transport{DialContext: c.DialContext}, Timeout: 60 * time.Second}
	for range 3 {
		resp, err := hc.Get(srv.URL("/big.bin"))
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		n, err := io.Copy(h, resp.Body)
		resp.Body.Close()
		if err != nil || n != size {
			t.Fatalf("got %d bytes, err %v", n, err)
		}
		if got := fmt.Sprintf("%x", h.Sum(nil)); got != srv.BigSHA256() {
			t.Fatalf("big.bin sha256 %s, want %s", got, srv.BigSHA256())
		}
		if c.RxParallel() > 0 {
			break
		}
	}
	// Bursts of 16+ datagrams are the common case of a download here, but
	// a worker that never got a core could miss them all: hence up to
	// three downloads.
	st := c.Stats()
	t.Logf("ESP packets in %d, by the worker %d", st.ESPIn.Packets, c.RxParallel())
	if c.RxParallel() == 0 {
		t.Fatal("the crypto worker decrypted nothing")
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
}
