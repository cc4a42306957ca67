package ppp

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"net/netip"
	"sync"
	"testing"
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

type session struct {
	t          *testing.T
	clk        *clock.Fake
	w          *wire
	c          *Client
	s          *Server
	cancelC    context.CancelFunc
	cancelS    context.CancelFunc
	cErr, sErr chan error
	mu         sync.Mutex
	cEvents    []Event
	sEvents    []Event
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

// start wires a Client and a Server together and runs both.
func start(t *testing.T, cc Config, sc ServerConfig, w *wire) *session {
	t.Helper()
	clk := cc.Clock.(*clock.Fake)
	ss := &session{t: t, clk: clk, w: w, cErr: make(chan error, 1), sErr: make(chan error, 1)}
	var c *Client
	var s *Server
	c = NewClient(cc, w.sender(0, func(b []byte) { s.HandleFrame(b) }))
	s = NewServer(sc, w.sender(1, func(b []byte) { c.HandleFrame(b) }))
	ss.c, ss.s = c, s
	cctx, cc1 := context.WithCancel(context.Background())
	sctx, cc2 := context.WithCancel(context.Background())
	ss.cancelC, ss.cancelS = cc1, cc2
	go func() {
		for e := range c.Events() {
			ss.mu.Lock()
			ss.cEvents = append(ss.cEvents, e)
			ss.mu.Unlock()
		}
	}()
	go func() {
		for e := range s.Events() {
			ss.mu.Lock()
			ss.sEvents = append(ss.sEvents, e)
			ss.mu.Unlock()
		}
	}()
	go func() { ss.sErr <- s.Run(sctx) }()
	go func() { ss.cErr <- c.Run(cctx) }()
	t.Cleanup(func() { cc1(); cc2() })
	return ss
}

// pump advances the fake clock in small steps until cond holds, failing
// after ~5 s of real time.
func pump(t *testing.T, clk *clock.Fake, step time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in time")
		}
		time.Sleep(2 * time.Millisecond)
		if step > 0 {
			clk.Advance(step)
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

func (ss *session) waitUp(step time.Duration) IPUp {
	ss.t.Helper()
	pump(ss.t, ss.clk, step, func() bool {
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

// waitErr waits for a Run result, advancing the clock by step.
func waitErr(t *testing.T, clk *clock.Fake, step time.Duration, ch chan error) error {
	t.Helper()
	var err error
	got := false
	pump(t, clk, step, func() bool {
		select {
		case err = <-ch:
			got = true
		default:
		}
		return got
	})
	return err
}

func newFake() *clock.Fake { return clock.NewFake(time.Unix(1_700_000_000, 0)) }

func errIs(err, target error) bool { return errors.Is(err, target) }
