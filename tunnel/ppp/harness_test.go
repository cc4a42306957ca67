package ppp

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"net/netip"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/l2tpproxy/l2tpproxy/tunnel/clock"
)

// seeded is a deterministic io.Reader for Rand.
type seeded struct{ r *rand.ChaCha8 }

func newSeeded(seed byte) *seeded {
	var s [32]byte
	s[0] = seed
	return &seeded{rand.NewChaCha8(s)}
}
func (s *seeded) Read(b []byte) (int, error) { return s.r.Read(b) }

// wire records the frames each side sent and can drop some.
type wire struct {
	mu      sync.Mutex
	sent    [2][][]byte                      // [0] client->server, [1] server->client
	drop    func(dir int, frame []byte) bool // true: lose the frame
	addFF03 bool
}

func (w *wire) sender(dir int, to func([]byte)) func([]byte) error {
	return func(b []byte) error {
		w.mu.Lock()
		cp := bytes.Clone(b)
		w.sent[dir] = append(w.sent[dir], cp)
		lose := w.drop != nil && w.drop(dir, cp)
		w.mu.Unlock()
		if lose || to == nil {
			return nil
		}
		fr := cp
		if w.addFF03 && dir == 1 {
			fr = append([]byte{0xff, 0x03}, cp...)
		}
		to(bytes.Clone(fr))
		return nil
	}
}

// frames returns the control packets one side sent with the given protocol.
func (w *wire) frames(dir int, proto uint16) []packet {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []packet
	for _, f := range w.sent[dir] {
		p, info, err := DecodeFrame(f)
		if err != nil || p != proto {
			continue
		}
		if pk, err := parsePacket(info); err == nil {
			out = append(out, pk)
		}
	}
	return out
}

// session is a Client and a Server wired together, run inside the
// caller's synctest bubble (on clock.Real: the bubble's fake time).
type session struct {
	t          *testing.T
	w          *wire
	c          *Client
	s          *Server
	cancelC    context.CancelFunc
	cancelS    context.CancelFunc
	cErr, sErr chan error
	mu         sync.Mutex
	cEvents    []Event
	sEvents    []Event
	done       sync.WaitGroup // Runs and event readers ended
}

var (
	testLocal = netip.MustParseAddr("192.168.42.1")
	testPeer  = netip.MustParseAddr("192.168.42.10")
	testDNS   = []netip.Addr{netip.MustParseAddr("192.168.42.1"), netip.MustParseAddr("192.168.42.2")}
)

func baseConfigs(clk clock.Clock) (Config, ServerConfig) {
	return Config{User: "vpnuser", Password: []byte("vpnpass"), Clock: clk, Rand: newSeeded(1)},
		ServerConfig{Auth: AuthMSCHAPv2, Users: map[string][]byte{"vpnuser": []byte("vpnpass")},
			Local: testLocal, Peer: testPeer, DNS: testDNS, Clock: clk, Rand: newSeeded(2), MRU: 1280}
}

// start wires a Client and a Server together and runs both; the test's
// cleanup stops them and waits for every goroutine it started (all must
// end before the bubble does).
func start(t *testing.T, cc Config, sc ServerConfig, w *wire) *session {
	t.Helper()
	ss := &session{t: t, w: w, cErr: make(chan error, 1), sErr: make(chan error, 1)}
	var c *Client
	var s *Server
	c = NewClient(cc, w.sender(0, func(b []byte) { s.HandleFrame(b) }))
	s = NewServer(sc, w.sender(1, func(b []byte) { c.HandleFrame(b) }))
	ss.c, ss.s = c, s
	cctx, cc1 := context.WithCancel(context.Background())
	sctx, cc2 := context.WithCancel(context.Background())
	ss.cancelC, ss.cancelS = cc1, cc2
	ss.done.Go(func() {
		for e := range c.Events() {
			ss.mu.Lock()
			ss.cEvents = append(ss.cEvents, e)
			ss.mu.Unlock()
		}
	})
	ss.done.Go(func() {
		for e := range s.Events() {
			ss.mu.Lock()
			ss.sEvents = append(ss.sEvents, e)
			ss.mu.Unlock()
		}
	})
	ss.done.Go(func() { ss.sErr <- s.Run(sctx) })
	ss.done.Go(func() { ss.cErr <- c.Run(cctx) })
	t.Cleanup(func() { cc1(); cc2(); ss.done.Wait() })
	return ss
}

// pumpLimit bounds how much of the bubble's time pump and waitErr let pass.
const pumpLimit = 2 * time.Minute

// pump waits until cond holds, checking it whenever the bubble is idle.
// With step 0 it must hold without any time passing; otherwise the
// bubble's time moves on by step between checks (pumpLimit at most).
func pump(t *testing.T, step time.Duration, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(pumpLimit); ; time.Sleep(step) {
		synctest.Wait()
		if cond() {
			return
		}
		if step == 0 {
			t.Fatal("condition not reached without time passing")
		}
		if !time.Now().Before(deadline) {
			t.Fatalf("condition not reached within %v", pumpLimit)
		}
	}
}

func (ss *session) clientIPUp() *IPUp {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for _, e := range ss.cEvents {
		if ip, ok := e.(IPUp); ok {
			return &ip
		}
	}
	return nil
}

func (ss *session) event(server bool, match func(Event) bool) Event {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	evs := ss.cEvents
	if server {
		evs = ss.sEvents
	}
	for _, e := range evs {
		if match(e) {
			return e
		}
	}
	return nil
}

// waitUp waits until both sides report IPUp (step as for pump: 0, it must
// come without any time passing) and fails if either Run ends first.
func (ss *session) waitUp(step time.Duration) IPUp {
	ss.t.Helper()
	pump(ss.t, step, func() bool {
		select {
		case err := <-ss.cErr:
			ss.t.Fatalf("client ended early: %v", err)
		case err := <-ss.sErr:
			ss.t.Fatalf("server ended early: %v", err)
		default:
		}
		return ss.clientIPUp() != nil && ss.event(true, isIPUp) != nil
	})
	return *ss.clientIPUp()
}

func isIPUp(e Event) bool { _, ok := e.(IPUp); return ok }

// waitErr waits for a Run result. With limit 0 it must have come without
// any time passing (checked once the bubble is idle); otherwise the
// bubble's time may pass, limit at most.
func waitErr(t *testing.T, limit time.Duration, ch chan error) error {
	t.Helper()
	if limit == 0 {
		synctest.Wait()
		select {
		case err := <-ch:
			return err
		default:
			t.Fatal("Run did not return without time passing")
			return nil
		}
	}
	select {
	case err := <-ch:
		return err
	case <-time.After(limit):
		t.Fatalf("Run did not return within %v", limit)
		return nil
	}
}

// newFake is a clock for tests that drive a Client by hand, outside a
// synctest bubble.
func newFake() *clock.Fake { return clock.NewFake(time.Unix(1_700_000_000, 0)) }

func errIs(err, target error) bool { return errors.Is(err, target) }
