package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/l2tpproxy/l2tpproxy/proxy"
	"github.com/l2tpproxy/l2tpproxy/tunnel/testserver"
)

// TestSoak runs `up` against the in-process test server for
// L2TPPROXY_SOAK (e.g. 1h; `make soak`) under everything that happens to a
// long-running tunnel, all at once and far more often than in life:
//   - we rekey both phases ourselves (lifetimes 40 s and 20 s) and the
//     server starts a Quick Mode every 7 s;
//   - the server restarts every L2TPPROXY_SOAK_RESTART (default 3 min), so
//     `up` reconnects;
//   - four clients download and check 1 MiB through SOCKS5 and the HTTP
//     proxy without pause.
//
// Requests that were in flight while the server restarted may fail (the
// connections opened before a drop fail at once, by design); every other
// request must succeed. At the end it reports requests, bytes, rekeys,
// reconnects, RSS and heap at the start and the end, and checks that
// memory and goroutines did not grow.
func TestSoak(t *testing.T) {
	d, err := time.ParseDuration(os.Getenv("L2TPPROXY_SOAK"))
	if err != nil || d <= 0 {
		t.Skip("L2TPPROXY_SOAK not set (make soak)")
	}
	restartEvery := 3 * time.Minute
	if v, err := time.ParseDuration(os.Getenv("L2TPPROXY_SOAK_RESTART")); err == nil && v > 0 {
		restartEvery = v
	}
	// L2TPPROXY_SOAK_PAUSE paces each client (a long soak on a shared
	// machine need not run flat out).
	pause, _ := time.ParseDuration(os.Getenv("L2TPPROXY_SOAK_PAUSE"))
	const bigSize = 1 << 20
	scfg := testserver.Config{BigSize: bigSize, Faults: testserver.Faults{RekeyEvery: 7 * time.Second}}
	srv, err := testserver.Start(scfg)
	if err != nil {
		t.Fatal(err)
	}
	var srvMu sync.Mutex // guards srv and the counters of servers gone
	var ikeSAs, ipsecSAs int64
	defer func() { srvMu.Lock(); srv.Close(); srvMu.Unlock() }()
	bigSum, helloBody := srv.BigSHA256(), srv.HelloBody()
	helloURL, bigURL := srv.URL("/hello.txt"), srv.URL("/big.bin")
	goroutinesBefore := runtime.NumGoroutine()

	r := startServeCfg(t, srv, proxySettings{Routes: &proxy.Routes{}}, func(sc *serveConfig) {
		sc.Tunnel.Phase1Lifetime, sc.Tunnel.Phase2Lifetime = 40*time.Second, 20*time.Second
		sc.Tunnel.DPDInterval = 2 * time.Second
		sc.ConnectWait = 15 * time.Second // the default of --connect-wait
	})

	// restarts holds the [start, end] of each server restart.
	var restartMu sync.Mutex
	var restarts [][2]time.Time
	overlapsRestart := func(a, b time.Time) bool {
		restartMu.Lock()
		defer restartMu.Unlock()
		for _, w := range restarts {
			// A request that began before the server went and ended after
			// it stopped: its connection was cut.
			if (w[1].IsZero() || a.Before(w[1])) && b.After(w[0]) {
				return true
			}
		}
		return false
	}

	var requests, failed, excused, bytesIn atomic.Int64
	var firstErrs []string
	var errMu sync.Mutex
	stop := make(chan struct{})
	var wg sync.WaitGroup
	worker := func(proxyURL *url.URL, u string, check func([]byte) bool) {
		defer wg.Done()
		hc := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL)}, Timeout: 60 * time.Second}
		defer hc.CloseIdleConnections()
		for {
			select {
			case <-stop:
				return
			default:
			}
			began := time.Now()
			resp, err := hc.Get(u)
			var b []byte
			if err == nil {
				b, err = io.ReadAll(resp.Body)
				resp.Body.Close()
				if err == nil && (resp.StatusCode != http.StatusOK || !check(b)) {
					err = fmt.Errorf("status %s, %d bytes, wrong content", resp.Status, len(b))
				}
			}
			requests.Add(1)
			if err == nil {
				bytesIn.Add(int64(len(b)))
				if pause > 0 {
					select {
					case <-stop:
					case <-time.After(pause):
					}
				}
				continue
			}
			if overlapsRestart(began, time.Now().Add(time.Second)) {
				excused.Add(1)
				hc.CloseIdleConnections()
				continue
			}
			failed.Add(1)
			errMu.Lock()
			if len(firstErrs) < 10 {
				firstErrs = append(firstErrs, fmt.Sprintf("%s via %s, began %s, failed after %v: %v", u, proxyURL.Scheme, began.Format("15:04:05.000"), time.Since(began).Round(time.Millisecond), err))
			}
			errMu.Unlock()
			hc.CloseIdleConnections()
		}
	}
	socksURL := &url.URL{Scheme: "socks5h", Host: r.socks.String()}
	httpURL := &url.URL{Scheme: "http", Host: r.http.String()}
	isBig := func(b []byte) bool {
		s := sha256.Sum256(b)
		return len(b) == bigSize && hex.EncodeToString(s[:]) == bigSum
	}
	isHello := func(b []byte) bool { return string(b) == helloBody }
	wg.Add(4)
	go worker(socksURL, bigURL, isBig)
	go worker(httpURL, bigURL, isBig)
	go worker(socksURL, helloURL, isHello)
	go worker(httpURL, helloURL, isHello)

	// Warm up, then take the starting figures.
	time.Sleep(min(10*time.Second, d/4))
	rssStart, heapStart := rssKB(t), heapMB()
	began := time.Now()
	end := began.Add(d)
	nextRestart := began.Add(restartEvery)
	for now := time.Now(); now.Before(end); now = time.Now() {
		if !now.Before(nextRestart) {
			nextRestart = now.Add(restartEvery)
			srvMu.Lock()
			ikeSAs += srv.IKESAs()
			ipsecSAs += srv.IPsecSAs()
			// The window opens now (a zero end: still open), before the
			// first request can fail because of it.
			restartMu.Lock()
			restarts = append(restarts, [2]time.Time{time.Now(), {}})
			w := &restarts[len(restarts)-1]
			restartMu.Unlock()
			ike, natt := srv.IKEAddr(), srv.NATTAddr()
			before := strings.Count(r.log.String(), "tunnel reconnected")
			srv.Close()
			cfg := scfg
			cfg.IKEAddr, cfg.NATTAddr = ike, natt
			srv, err = testserver.Start(cfg)
			srvMu.Unlock()
			if err != nil {
				close(stop)
				wg.Wait()
				t.Fatalf("restarting the server: %v", err)
			}
			// The outage lasts until `up` has reconnected: until then a
			// request may still go into the old tunnel, which is cut.
			for i := 0; i < 300 && strings.Count(r.log.String(), "tunnel reconnected") == before; i++ {
				time.Sleep(100 * time.Millisecond)
			}
			restartMu.Lock()
			w[1] = time.Now()
			restartMu.Unlock()
		}
		time.Sleep(min(time.Second, time.Until(end)))
	}
	close(stop)
	wg.Wait()
	rssEnd, heapEnd := rssKB(t), heapMB()
	srvMu.Lock()
	ikeSAs += srv.IKESAs()
	ipsecSAs += srv.IPsecSAs()
	srvMu.Unlock()
	log := r.log.String()
	reconnects := strings.Count(log, "tunnel reconnected")
	r.stop(t)

	t.Logf("SOAK %v: %d requests, %d MiB in, %d failed, %d cut by a server restart; %d server restarts, %d reconnects; IKE SAs %d, IPsec SAs %d (rekeys from both sides); RSS %d -> %d KiB, heap %.1f -> %.1f MiB (client and test server in one process)",
		d, requests.Load(), bytesIn.Load()>>20, failed.Load(), excused.Load(), len(restarts), reconnects, ikeSAs, ipsecSAs, rssStart, rssEnd, heapStart, heapEnd)
	if n := failed.Load(); n > 0 {
		var warn []string
		for _, l := range strings.Split(log, "\n") {
			if !strings.Contains(l, "level=DEBUG") {
				warn = append(warn, l)
			}
		}
		t.Errorf("%d requests failed outside server restarts, first ones:\n%s\nlog:\n%s", n, strings.Join(firstErrs, "\n"), strings.Join(warn, "\n"))
	}
	if reconnects < len(restarts) {
		t.Errorf("%d reconnects for %d server restarts", reconnects, len(restarts))
	}
	if strings.Contains(log, "tunnel went down") && len(restarts) == 0 {
		t.Errorf("the tunnel went down with no server restart:\n%s", log)
	}
	if heapEnd > 2*heapStart+16 {
		t.Errorf("heap grew from %.1f to %.1f MiB", heapStart, heapEnd)
	}
	// Everything serve started is gone once it returned (the test server's
	// goroutines too, after Close in the deferred call; allow the HTTP
	// client's idle connection goroutines a moment to exit).
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > goroutinesBefore+8 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > goroutinesBefore+8 {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines after stop, %d before start:\n%s", n, goroutinesBefore, buf[:runtime.Stack(buf, true)])
	}
}

// rssKB is this process's resident set (VmRSS, KiB).
func rssKB(t *testing.T) int {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	return 0
}

// heapMB is the live heap after a collection.
func heapMB() float64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return float64(m.HeapInuse) / (1 << 20)
}
