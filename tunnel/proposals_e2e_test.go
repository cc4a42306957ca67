package tunnel_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/l2tpproxy/l2tpproxy/tunnel"
	"github.com/l2tpproxy/l2tpproxy/tunnel/ike"
	"github.com/l2tpproxy/l2tpproxy/tunnel/testserver"
)

// moveData fetches hello.txt and uploads 256 KiB through the tunnel, checked
// by the server's answer (length and sha256).
func moveData(t *testing.T, c *tunnel.Client, srv *testserver.Server) {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{DialContext: c.DialContext, DisableKeepAlives: true}, Timeout: 20 * time.Second}
	if b := get(t, hc, srv.URL("/hello.txt")); string(b) != srv.HelloBody() {
		t.Fatalf("hello.txt = %q", b)
	}
	up := make([]byte, 256<<10)
	rand.Read(up)
	resp, err := hc.Post(srv.URL("/upload"), "application/octet-stream", bytes.NewReader(up))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := fmt.Sprintf("%d %x\n", len(up), sha256.Sum256(up)); string(got) != want {
		t.Fatalf("upload answer %q, want %q", got, want)
	}
}

// TestEveryProposal connects with each DH group and cipher/hash of phase 1,
// and each ESP transform, with client and server both restricted to that
// one choice, and moves data. The ECP and MODP-3072/4096 rows also run PFS
// in the phase-1 group (the server requires it for them).
func TestEveryProposal(t *testing.T) {
	type row struct {
		ike, esp string
		pfs      bool // the server requires PFS: --pfs auto retries with it
		pfsOn    bool // --pfs yes: PFS from the first Quick Mode
	}
	rows := []row{
		{ike: "aes128-sha1-modp1024"},
		{ike: "aes128-sha1-modp1536"},
		{ike: "aes256-sha256-modp2048"},
		{ike: "aes256-sha256-modp3072", pfs: true},
		{ike: "aes256-sha512-modp4096", pfs: true},
		{ike: "aes128-sha256-ecp256", pfs: true},
		{ike: "aes256-sha384-ecp384", pfs: true},
		{ike: "aes256-sha512-ecp521", pfs: true},
		{ike: "aes256-sha1-ecp384", pfs: true, pfsOn: true},
		{ike: "aes192-sha384-modp2048"},
		{ike: "3des-md5-modp2048"},
	}
	for _, e := range []string{"aes128gcm8", "aes192gcm12", "aes256gcm16", "aes192-sha1", "aes128-md5", "3des-sha256",
		"aes256-sha384", "aes256-sha512", "aes128-sha256"} {
		rows = append(rows, row{ike: "aes128-sha1-modp2048", esp: e})
	}
	for _, r := range rows {
		name := r.ike
		if r.esp != "" {
			name = r.esp
		}
		if r.pfsOn {
			name += "/pfs=yes"
		}
		t.Run(name, func(t *testing.T) {
			p1, err := ike.ParsePhase1(r.ike)
			if err != nil {
				t.Fatal(err)
			}
			p2 := ike.DefaultPhase2[:1]
			if r.esp != "" {
				if p2, err = ike.ParsePhase2(r.esp); err != nil {
					t.Fatal(err)
				}
			}
			srv := startServer(t, testserver.Config{Phase1: p1, Phase2: p2, RequirePFS: r.pfs})
			cfg := clientConfig(t, srv)
			cfg.Phase1, cfg.Phase2 = p1, p2
			if r.pfsOn {
				cfg.PFS = ike.PFSOn
			}
			c := dial(t, cfg)
			info := c.Info()
			if info.IKESuite != p1[0].String() || info.ESPSuite != p2[0].String() {
				t.Errorf("suites %q / %q, want %q / %q", info.IKESuite, info.ESPSuite, p1[0], p2[0])
			}
			wantPFS := ""
			if r.pfs {
				wantPFS = groupSuffix(p1[0])
			}
			if info.PFS != wantPFS {
				t.Errorf("PFS %q, want %q", info.PFS, wantPFS)
			}
			moveData(t, c, srv)
		})
	}
}

// groupSuffix is the DH group name at the end of a suite's String, e.g. "ECP256".
func groupSuffix(t ike.Phase1Transform) string {
	s := t.String()
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '/' {
			return s[i+1:]
		}
	}
	return s
}
