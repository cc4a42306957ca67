//go:build interop

package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestInteropRekeys: short lifetimes on both phases, for as long as
// L2TPPROXY_INTEROP_REKEY says (testdata/interop/run sets it for the
// variants that run it). We offer 45 s for the ISAKMP SA and 20 s for the
// IPsec SA, so we rekey both ourselves, make-before-break; a REKEY=server
// variant also rekeys from its side (a Quick Mode every few seconds from
// the first IPsec SA on, a new Main Mode every minute), so rekeys collide.
// Throughout, one TCP connection through the SOCKS5 proxy carries a stream
// of uploads, each checked: no request may fail and the connection must
// stay the same.
func TestInteropRekeys(t *testing.T) {
	p := loadPeer(t)
	d, err := time.ParseDuration(os.Getenv("L2TPPROXY_INTEROP_REKEY"))
	if err != nil || d <= 0 {
		t.Skip("L2TPPROXY_INTEROP_REKEY not set (testdata/interop/run sets it for the rekey variants)")
	}
	socks := freePort(t)
	began := time.Now()
	pc := start(t, p, nil, "--socks5", socks, "--http", "", "--log-level", "info",
		"--ike-lifetime", "45s", "--esp-lifetime", "20s")
	pc.waitFor(t, regexp.MustCompile(`SOCKS5 proxy listening`), 90*time.Second)
	connected := time.Since(began)

	tr := &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "socks5", Host: socks}), MaxConnsPerHost: 1}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	body := make([]byte, 64<<10)
	var requests, failures, newConns int
	var bytesUp int64
	end := time.Now().Add(d)
	for time.Now().Before(end) && failures < 5 {
		rand.Read(body)
		sum := sha256.Sum256(body)
		want := fmt.Sprintf("%d %s", len(body), hex.EncodeToString(sum[:]))
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) {
			if !i.Reused {
				newConns++
			}
		}}
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), http.MethodPost, p["UPLOAD_URL"], bytes.NewReader(body))
		resp, err := hc.Do(req)
		var got []byte
		if err == nil {
			got, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		cancel()
		requests++
		switch {
		case err != nil:
			failures++
			t.Errorf("request %d at %v: %v", requests, time.Since(began).Round(time.Millisecond), err)
		case strings.TrimSpace(string(got)) != want:
			failures++
			t.Errorf("request %d: the server got %q, we sent %q", requests, strings.TrimSpace(string(got)), want)
		default:
			bytesUp += int64(len(body))
		}
	}
	if newConns != 1 {
		t.Errorf("%d TCP connections for %d requests: the first one did not survive the rekeys", newConns, requests)
	}
	out := pc.output()
	if strings.Contains(out, "tunnel went down") {
		t.Errorf("the tunnel went down during the rekeys:\n%s", out)
	}
	count := func(s string) int { return strings.Count(out, s) }
	espOurs, ikeOurs := count("rekeying ESP SA"), count("rekeying the IKE SA before it expires")
	espAll, ikeServer := count("IPsec SA rekeyed"), count("the server starts a new IKE SA")
	t.Logf("REKEY %s: %d requests (%d MiB up) over %v on %d TCP connection(s), %d failed; IPsec SA rekeys %d (we started %d), IKE SA rekeys we started %d, Main Modes the server started %d; connect %v",
		p.label(), requests, bytesUp>>20, d, newConns, failures, espAll, espOurs, ikeOurs, ikeServer, connected.Round(time.Millisecond))
	// At 20 s and 45 s (rekeyed at 90%), the period holds several of each.
	if min := int(d / (18 * time.Second)); espAll < min {
		t.Errorf("only %d IPsec SA rekeys in %v, want >= %d", espAll, d, min)
	}
	if ikeOurs+ikeServer < int(d/(41*time.Second)) {
		t.Errorf("only %d IKE SA rekeys in %v", ikeOurs+ikeServer, d)
	}
	if p["REKEY"] == "server" && (ikeServer == 0 || espAll <= espOurs) {
		t.Errorf("the server was meant to rekey too: %d Main Modes from it, %d of %d IPsec SA rekeys ours", ikeServer, espOurs, espAll)
	}
}
