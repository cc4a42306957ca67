//go:build interop

package main

import (
	"net/http"
	"net/url"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestInteropServerDies: the server freezes (SIGSTOP: it keeps its sockets
// and answers nothing, as a hung server or a dead path does), then is
// killed and started again. Each time `up` must notice within 35 s (three
// unanswered R-U-THEREs at the default 10 s interval), say that IKE/ESP went
// silent, and serve again within 10 s of the server being back, without a
// restart; a connection opened during the outage waits and goes through.
//
// The harness says how to hurt the server in FAULT (softether/fault).
func TestInteropServerDies(t *testing.T) {
	p := loadPeer(t)
	// FAULT is the harness's script with its leading arguments; FAULTS
	// what it can do to the server.
	fault := strings.Fields(p["FAULT"])
	if len(fault) == 0 {
		t.Skip("this server's harness has no FAULT script")
	}
	can := strings.Fields(p["FAULTS"])
	socks, httpAddr := freePort(t), freePort(t)
	pc := start(t, p, nil, "--socks5", socks, "--http", httpAddr, "--log-level", "info")
	pc.waitFor(t, regexp.MustCompile(`HTTP proxy listening`), 90*time.Second)
	httpURL := &url.URL{Scheme: "http", Host: httpAddr}
	pc.getHello(t, p, httpURL, "before the fault")
	run := func(t *testing.T, what string) {
		t.Helper()
		out, err := exec.Command(fault[0], append(fault[1:], what)...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", p["FAULT"], what, err, out)
		}
	}

	for _, c := range []struct{ name, hurt, heal string }{
		{"frozen", "freeze", "thaw"},
		{"killed", "kill", "start"},
	} {
		if !slices.Contains(can, c.hurt) {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			t.Cleanup(func() { exec.Command(fault[0], append(fault[1:], c.heal)...).Run() }) // never leave it frozen or dead
			began := time.Now()
			run(t, c.hurt)
			line := pc.waitFor(t, regexp.MustCompile(`tunnel went down, reconnecting`), 60*time.Second)
			noticed := time.Since(began)
			if noticed > 35*time.Second {
				t.Errorf("the %s server was noticed after %v, want <= 35 s", c.name, noticed.Round(time.Millisecond))
			}
			if !strings.Contains(line, "R-U-THERE") || !strings.Contains(line, "IKE") {
				t.Errorf("the error does not say IKE/ESP went silent: %s", line)
			}

			// A new connection during the outage waits for the tunnel.
			type result struct {
				err  error
				done time.Time
			}
			waited := make(chan result, 1)
			go func() {
				hc := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(httpURL), DisableKeepAlives: true}, Timeout: 40 * time.Second}
				resp, err := hc.Get(p["HELLO_URL"])
				if err == nil {
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						err = &url.Error{Op: "GET", URL: p["HELLO_URL"], Err: errStatus(resp.Status)}
					}
				}
				waited <- result{err, time.Now()}
			}()
			time.Sleep(2 * time.Second) // the request is waiting now; the server is still gone
			run(t, c.heal)              // returns once the server listens again
			back := time.Now()
			pc.waitFor(t, regexp.MustCompile(`tunnel reconnected`), 60*time.Second)
			serving := time.Since(back)
			r := <-waited
			if r.err != nil {
				t.Fatalf("the connection made during the outage failed: %v\n%s", r.err, pc.output())
			}
			if serving > 10*time.Second {
				t.Errorf("serving again %v after the server was back, want <= 10 s", serving.Round(time.Millisecond))
			}
			t.Logf("STAYUP %s: %s server noticed in %v; serving again %v after it was back; the waiting request done %v after",
				p.label(), c.name, noticed.Round(time.Millisecond), serving.Round(time.Millisecond), r.done.Sub(back).Round(time.Millisecond))
			pc.getHello(t, p, httpURL, "after the "+c.name+" server came back")
		})
	}
}

type errStatus string

func (e errStatus) Error() string { return "status " + string(e) }

// TestInteropPhase1Stall: the server answers MM1 and never sees MM3 (the
// harness's FAULT stall-mm3 drops every MM3 on its way in, for 5 s), as
// SoftEther and Libreswan did in CI. `check` must start a new Main Mode
// with new cookies after 7 s (three MM3s), which the server (still holding
// the first, half-open exchange from the same address and port) accepts,
// and connect within the connect timeout. Before, the connect sat out
// retransmissions of the same MM3 and failed at 30 s when they were lost.
func TestInteropPhase1Stall(t *testing.T) {
	p := loadPeer(t)
	fault := strings.Fields(p["FAULT"])
	if len(fault) == 0 || !slices.Contains(strings.Fields(p["FAULTS"]), "stall-mm3") {
		t.Skip("this server's harness cannot stall Main Mode (FAULTS lacks stall-mm3)")
	}
	run := func(what string) string {
		out, err := exec.Command(fault[0], append(fault[1:], what)...).CombinedOutput()
		if err != nil {
			t.Errorf("%s %s: %v\n%s", p["FAULT"], what, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	run("stall-mm3")
	t.Cleanup(func() { run("unstall") })
	unstalled := make(chan string, 1)
	go func() {
		time.Sleep(5 * time.Second) // after the third MM3 (at 3 s), before the new exchange (at 7 s)
		unstalled <- run("unstall")
	}()
	start := time.Now()
	code, out, errOut := runBinary(t, p, 60*time.Second, "check", "--log-level", "info")
	took := time.Since(start)
	dropped := <-unstalled
	if code != 0 {
		t.Fatalf("check exited %d after %v (%s):\n%s\n%s%s", code, took.Round(time.Millisecond), dropped, out, errOut, peerLogTail(p))
	}
	restarted := strings.Contains(errOut, "starting a new exchange")
	if !restarted {
		t.Errorf("no new exchange in the log:\n%s", errOut)
	}
	if dropped != "stall-mm3: dropped 3" {
		t.Errorf("the filter says %q, want 3 MM3s dropped", dropped)
	}
	if took < 7*time.Second || took > 25*time.Second {
		t.Errorf("check took %v, want 7-25 s (a new exchange at 7 s, then a normal connect)", took.Round(time.Millisecond))
	}
	t.Logf("PHASE1_STALL %s: %s; connected and checked in %v; new Main Mode: %v", p.label(), dropped, took.Round(time.Millisecond), restarted)
}
