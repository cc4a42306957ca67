package l2tp

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/l2tpproxy/l2tpproxy/tunnel/clock"
)

type linkAction int

const (
	pass linkAction = iota
	drop
	hold // keep until the next passed packet, then deliver after it (reorder)
	dupl // deliver twice
)

type receiver interface{ HandleControl([]byte) }

type sentPacket struct {
	at  time.Time // inside a synctest bubble: the bubble's fake time
	pkt []byte
	m   *ControlMessage
}

// link is one direction of a lossy, reordering channel transport.
type link struct {
	mu     sync.Mutex
	to     receiver
	filter func(n int, m *ControlMessage) linkAction
	held   [][]byte
	sent   []sentPacket
	bad    int           // unparsable packets written
	wrote  chan struct{} // closed after the next write (see waitUntil)
}

func (l *link) WriteL2TP(p []byte) error {
	defer l.notify()
	cp := append([]byte(nil), p...)
	m, err := ParseControl(cp)
	if err != nil {
		l.mu.Lock()
		l.bad++
		l.mu.Unlock()
		return fmt.Errorf("test link: engine wrote an unparsable packet: %w", err)
	}
	l.mu.Lock()
	n := len(l.sent)
	l.sent = append(l.sent, sentPacket{at: time.Now(), pkt: cp, m: m})
	f, to := l.filter, l.to
	act := pass
	if f != nil {
		act = f(n, m)
	}
	var release [][]byte
	switch act {
	case hold:
		l.held = append(l.held, cp)
	case pass, dupl:
		release, l.held = l.held, nil
	}
	l.mu.Unlock()
	if to == nil {
		return nil
	}
	switch act {
	case pass:
		to.HandleControl(cp)
	case dupl:
		to.HandleControl(cp)
		to.HandleControl(append([]byte(nil), cp...))
	}
	for _, h := range release {
		to.HandleControl(h)
	}
	return nil
}

func (l *link) notify() {
	l.mu.Lock()
	if l.wrote != nil {
		close(l.wrote)
		l.wrote = nil
	}
	l.mu.Unlock()
}

// waitUntil waits, letting the bubble's time pass (limit at most), until
// cond holds; cond is checked again after every write to the link.
func (l *link) waitUntil(t *testing.T, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.After(limit)
	for {
		l.mu.Lock()
		if l.wrote == nil {
			l.wrote = make(chan struct{})
		}
		wrote := l.wrote
		l.mu.Unlock()
		if cond() {
			return
		}
		select {
		case <-wrote:
		case <-deadline:
			t.Fatalf("condition not met within %v", limit)
		}
	}
}

func (l *link) setFilter(f func(n int, m *ControlMessage) linkAction) {
	l.mu.Lock()
	l.filter = f
	l.mu.Unlock()
}

func (l *link) packets() []sentPacket {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]sentPacket(nil), l.sent...)
}

// types lists the message types written, "ZLB" included.
func (l *link) types() []string {
	var s []string
	for _, p := range l.packets() {
		s = append(s, p.m.Type.String())
	}
	return s
}

func (l *link) count(mt MessageType) int {
	n := 0
	for _, p := range l.packets() {
		if p.m.Type == mt {
			n++
		}
	}
	return n
}

// pair is a LAC and an LNS on two links, run inside a synctest bubble on
// clock.Real (the bubble's fake time).
type pair struct {
	started          time.Time // the bubble's time when the pair was made
	lac              *LAC
	lns              *LNS
	up, down         *link // LAC->LNS, LNS->LAC
	lacErr, lnsErr   chan error
	lacStop, lnsStop context.CancelFunc
	done             sync.WaitGroup // both Runs returned
}

func testConfig(clk clock.Clock, name string) Config {
	return Config{Clock: clk, HostName: name, VendorName: name + "-vendor"}
}

func newPair(t *testing.T, lacCfg, lnsCfg func(*Config)) *pair {
	t.Helper()
	p := &pair{started: time.Now(), up: &link{}, down: &link{},
		lacErr: make(chan error, 1), lnsErr: make(chan error, 1)}
	lc, sc := testConfig(clock.Real, "lac"), testConfig(clock.Real, "lns")
	if lacCfg != nil {
		lacCfg(&lc)
	}
	if lnsCfg != nil {
		lnsCfg(&sc)
	}
	p.lac = NewLAC(lc, p.up)
	p.lns = NewLNS(sc, p.down)
	p.up.to, p.down.to = p.lns, p.lac
	return p
}

// start runs both; the test's cleanup stops them and waits until both
// Runs have returned (all goroutines of a bubble must end with it).
func (p *pair) start(t *testing.T) {
	t.Helper()
	ctx1, c1 := context.WithCancel(context.Background())
	ctx2, c2 := context.WithCancel(context.Background())
	p.lacStop, p.lnsStop = c1, c2
	p.done.Go(func() { p.lnsErr <- p.lns.Run(ctx2) })
	p.done.Go(func() { p.lacErr <- p.lac.Run(ctx1) })
	t.Cleanup(func() { c1(); c2(); p.done.Wait() })
}

// elapsed is how much of the bubble's time has passed since newPair.
func (p *pair) elapsed() time.Duration { return time.Since(p.started) }

const waitLimit = 5 * time.Second

// waitSessionUp waits for SessionUp on ch, letting the bubble's time pass
// (waitLimit at most).
func waitSessionUp(t *testing.T, ch <-chan Event) Session {
	t.Helper()
	deadline := time.After(waitLimit)
	for {
		select {
		case ev := <-ch:
			if su, ok := ev.(SessionUp); ok {
				return su.Session
			}
		case <-deadline:
			t.Fatal("no SessionUp")
		}
	}
}

// sessionUp returns the SessionUp on ch that must have come without any
// time passing: once the bubble is idle, it is there or the test fails.
func sessionUp(t *testing.T, ch <-chan Event) Session {
	t.Helper()
	synctest.Wait()
	for {
		select {
		case ev := <-ch:
			if su, ok := ev.(SessionUp); ok {
				return su.Session
			}
		default:
			t.Fatal("no SessionUp without time passing")
			return Session{}
		}
	}
}

// waitErr waits for a Run result on ch, letting the bubble's time pass
// (limit at most).
func waitErr(t *testing.T, ch <-chan error, limit time.Duration, what string) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(limit):
		t.Fatalf("%s: Run did not return within %v", what, limit)
		return nil
	}
}

// returned is the Run result on ch, which must have come without any time
// passing: once the bubble is idle, it is there or the test fails.
func returned(t *testing.T, ch <-chan error, what string) error {
	t.Helper()
	synctest.Wait()
	select {
	case err := <-ch:
		return err
	default:
		t.Fatalf("%s: Run did not return without time passing", what)
		return nil
	}
}

func (p *pair) establish(t *testing.T) (lacS, lnsS Session) {
	t.Helper()
	p.start(t)
	lacS = sessionUp(t, p.lac.Events())
	lnsS = sessionUp(t, p.lns.Events())
	return
}

func TestEstablishAndShutdownFromLAC(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPair(t, nil, nil)
		lacS, lnsS := p.establish(t)
		if lacS.LocalTunnelID == 0 || lacS.PeerTunnelID == 0 || lacS.LocalSessionID == 0 || lacS.PeerSessionID == 0 {
			t.Fatalf("zero IDs: %+v", lacS)
		}
		if lacS.LocalTunnelID != lnsS.PeerTunnelID || lacS.PeerTunnelID != lnsS.LocalTunnelID ||
			lacS.LocalSessionID != lnsS.PeerSessionID || lacS.PeerSessionID != lnsS.LocalSessionID {
			t.Errorf("IDs disagree: LAC %+v LNS %+v", lacS, lnsS)
		}
		if lacS.PeerHostName != "lns" || lacS.PeerVendor != "lns-vendor" || lnsS.PeerHostName != "lac" || lnsS.PeerVendor != "lac-vendor" {
			t.Errorf("names: LAC %+v LNS %+v", lacS, lnsS)
		}
		if got, want := strings.Join(p.up.types(), ","), "SCCRQ,SCCCN,ICRQ,ICCN"; got != want {
			t.Errorf("LAC sent %s, want %s", got, want)
		}
		if got, want := strings.Join(p.down.types(), ","), "SCCRP,ZLB,ICRP,ZLB"; got != want {
			t.Errorf("LNS sent %s, want %s", got, want)
		}
		// Header IDs are the recipient's; Ns/Nr as RFC 2661 §5.8.
		wantHdr := []Header{
			{TunnelID: 0, SessionID: 0, Ns: 0, Nr: 0},
			{TunnelID: lacS.PeerTunnelID, Ns: 1, Nr: 1},
			{TunnelID: lacS.PeerTunnelID, Ns: 2, Nr: 1},
			{TunnelID: lacS.PeerTunnelID, SessionID: lacS.PeerSessionID, Ns: 3, Nr: 2},
		}
		for i, sp := range p.up.packets() {
			h := sp.m.Header
			h.Length = 0
			if h != wantHdr[i] {
				t.Errorf("LAC packet %d header %+v, want %+v", i, h, wantHdr[i])
			}
		}
		wantDown := []Header{
			{TunnelID: lacS.LocalTunnelID, Ns: 0, Nr: 1},
			{TunnelID: lacS.LocalTunnelID, Ns: 1, Nr: 2, Length: 12},
			{TunnelID: lacS.LocalTunnelID, SessionID: lacS.LocalSessionID, Ns: 1, Nr: 3},
			{TunnelID: lacS.LocalTunnelID, Ns: 2, Nr: 4, Length: 12},
		}
		for i, sp := range p.down.packets() {
			h := sp.m.Header
			if h.Length != 12 {
				h.Length = 0
			}
			if h != wantDown[i] {
				t.Errorf("LNS packet %d header %+v, want %+v", i, h, wantDown[i])
			}
		}
		if d := p.elapsed(); d != 0 {
			t.Errorf("clock moved by %v", d)
		}

		p.lacStop()
		if err := returned(t, p.lacErr, "LAC"); err != nil {
			t.Errorf("LAC Run = %v, want nil", err)
		}
		err := returned(t, p.lnsErr, "LNS")
		if !errors.Is(err, ErrSessionClosed) || !strings.Contains(err.Error(), "administrative") {
			t.Errorf("LNS Run = %v, want ErrSessionClosed (administrative)", err)
		}
		types := p.up.types()
		if got := strings.Join(types[4:6], ","); got != "CDN,StopCCN" {
			t.Errorf("LAC teardown sent %v", types)
		}
		for _, sp := range p.up.packets()[4:6] {
			if sp.m.Type == MsgCDN {
				if v, _ := sp.m.Uint16(AVPAssignedSessionID); v != lacS.LocalSessionID || sp.m.SessionID != lacS.PeerSessionID {
					t.Errorf("CDN IDs: AVP %d header %d", v, sp.m.SessionID)
				}
			}
			if sp.m.Type == MsgStopCCN {
				if v, _ := sp.m.Uint16(AVPAssignedTunnelID); v != lacS.LocalTunnelID || sp.m.SessionID != 0 {
					t.Errorf("StopCCN IDs: AVP %d header session %d", v, sp.m.SessionID)
				}
			}
		}
	})
}

func TestShutdownFromLNS(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPair(t, nil, nil)
		p.establish(t)
		p.lnsStop()
		if err := returned(t, p.lnsErr, "LNS"); err != nil {
			t.Errorf("LNS Run = %v", err)
		}
		err := returned(t, p.lacErr, "LAC")
		if !errors.Is(err, ErrSessionClosed) || !strings.Contains(err.Error(), "server shutting down") {
			t.Errorf("LAC Run = %v", err)
		}
		if p.down.count(MsgCDN) != 1 || p.down.count(MsgStopCCN) != 1 {
			t.Errorf("LNS sent %v", p.down.types())
		}
	})
}

// Loss of the first SCCRQ and of the ZLB acking ICCN: retransmission after
// RetryInitial; the LNS re-acks the duplicate ICCN.
func TestRetransmitAndDuplicateReack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPair(t, nil, nil)
		p.up.setFilter(func(n int, m *ControlMessage) linkAction {
			if n == 0 {
				return drop // first SCCRQ
			}
			return pass
		})
		zlbs := 0
		p.down.setFilter(func(n int, m *ControlMessage) linkAction {
			if m.IsZLB() {
				zlbs++
				if zlbs == 2 { // the ZLB acking ICCN
					return drop
				}
			}
			return pass
		})
		p.start(t)
		p.up.waitUntil(t, 10*time.Second, func() bool { return p.up.count(MsgSCCRQ) == 2 })
		sp := p.up.packets()
		if d := sp[1].at.Sub(sp[0].at); d != time.Second {
			t.Errorf("SCCRQ retransmitted after %v, want 1s", d)
		}
		// Not a retransmission but a new SCCRQ with a new tunnel ID (xl2tpd
		// ignores a repeated one: see freshSCCRQ), Ns 0 again.
		tid0, _ := sp[0].m.Uint16(AVPAssignedTunnelID)
		tid1, _ := sp[1].m.Uint16(AVPAssignedTunnelID)
		if tid0 == tid1 || sp[1].m.Ns != 0 || sp[1].m.Nr != 0 || len(sp[0].pkt) != len(sp[1].pkt) {
			t.Errorf("second SCCRQ: tunnel ID %d after %d, Ns %d Nr %d, %d bytes after %d; want a new ID, Ns 0, Nr 0, same size",
				tid1, tid0, sp[1].m.Ns, sp[1].m.Nr, len(sp[1].pkt), len(sp[0].pkt))
		}
		lnsS := sessionUp(t, p.lns.Events())
		// ICCN's ack was lost: the LAC retransmits ICCN.
		p.up.waitUntil(t, 10*time.Second, func() bool { return p.up.count(MsgICCN) == 2 })
		lacS := sessionUp(t, p.lac.Events())
		if lacS.PeerSessionID != lnsS.LocalSessionID {
			t.Errorf("sessions %+v %+v", lacS, lnsS)
		}
		synctest.Wait()
		if n := p.down.count(MsgZLB); n != 3 {
			t.Fatalf("LNS sent %d ZLBs, want 3 (the third re-acking the duplicate ICCN)", n)
		}
		down := p.down.packets()
		last := down[len(down)-1].m
		prev := down[len(down)-2].m
		if !last.IsZLB() || !prev.IsZLB() || last.Nr != prev.Nr || last.Ns != prev.Ns {
			t.Errorf("duplicate ICCN not re-acked with the same ZLB: %+v %+v", prev.Header, last.Header)
		}
		select {
		case ev := <-p.lns.Events():
			t.Errorf("LNS emitted %T for a duplicate", ev)
		default:
		}
	})
}

// Duplicated and reordered delivery: every packet on the wire twice, and the
// LNS's CDN+StopCCN swapped at shutdown. The LAC buffers the StopCCN,
// processes CDN first, then the StopCCN, without waiting for any timer.
func TestDuplicatesAndOutOfOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPair(t, nil, nil)
		p.up.setFilter(func(int, *ControlMessage) linkAction { return dupl })
		p.down.setFilter(func(n int, m *ControlMessage) linkAction {
			if m.Type == MsgCDN {
				return hold
			}
			if m.Type == MsgStopCCN {
				return pass // releases the held CDN after it
			}
			return dupl
		})
		p.establish(t)
		p.lnsStop()
		if err := returned(t, p.lnsErr, "LNS"); err != nil {
			t.Errorf("LNS Run = %v", err)
		}
		err := returned(t, p.lacErr, "LAC")
		if !errors.Is(err, ErrSessionClosed) {
			t.Errorf("LAC Run = %v, want ErrSessionClosed (CDN processed first)", err)
		}
		var stop *ControlMessage
		for _, sp := range p.down.packets() {
			if sp.m.Type == MsgStopCCN {
				stop = sp.m
			}
		}
		up := p.up.packets()
		if last := up[len(up)-1].m; stop == nil || last.Nr != stop.Ns+1 {
			t.Errorf("LAC's last packet %s Nr %d does not ack the buffered StopCCN (Ns %d)", last.Type, last.Nr, stop.Ns)
		}
		if d := p.elapsed(); d != 0 {
			t.Errorf("needed a retransmission: %v passed", d)
		}
	})
}

// The LNS probes after its HelloInterval of silence; the LAC answers with a
// ZLB and nobody retransmits. A silent LAC then times the LNS out.
func TestHelloAnswered(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPair(t, nil, func(c *Config) { c.HelloInterval = 10 * time.Second })
		p.establish(t)
		p.down.waitUntil(t, 15*time.Second, func() bool { return p.down.count(MsgHELLO) == 1 })
		var hello *ControlMessage
		for _, sp := range p.down.packets() {
			if sp.m.Type == MsgHELLO {
				hello = sp.m
			}
		}
		if hello.SessionID != 0 || len(hello.AVPs) != 1 {
			t.Errorf("HELLO %+v", hello)
		}
		synctest.Wait()
		up := p.up.packets()
		if last := up[len(up)-1].m; !last.IsZLB() || last.Nr != hello.Ns+1 {
			t.Fatalf("LAC's last packet %s Nr %d, want the ZLB acking the HELLO (Ns %d)", last.Type, last.Nr, hello.Ns)
		}
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if p.down.count(MsgHELLO) != 1 {
			t.Error("HELLO retransmitted although acked")
		}
		// Now the LAC goes silent (its packets are lost): the next HELLO times out.
		p.up.setFilter(func(int, *ControlMessage) linkAction { return drop })
		lnsErr := waitErr(t, p.lnsErr, 200*time.Second, "LNS")
		if !errors.Is(lnsErr, ErrTimeout) || !strings.Contains(lnsErr.Error(), "HELLO") {
			t.Errorf("LNS Run = %v, want ErrTimeout for HELLO", lnsErr)
		}
	})
}

// A silent peer: SCCRQ sent 1+MaxRetries times with 1,2,4,8,8 s backoff,
// then ErrTimeout.
func TestSilentPeerTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := &link{}
		lac := NewLAC(Config{Clock: clock.Real}, l)
		errc := make(chan error, 1)
		start := time.Now()
		go func() { errc <- lac.Run(context.Background()) }()
		err := waitErr(t, errc, 60*time.Second, "LAC")
		total := time.Since(start)
		if !errors.Is(err, ErrTimeout) {
			t.Fatalf("Run = %v", err)
		}
		sp := l.packets()
		if len(sp) != 1+defaultMaxRetries {
			t.Fatalf("%d transmissions, want %d", len(sp), 1+defaultMaxRetries)
		}
		want := []time.Duration{1, 2, 4, 8, 8}
		for i := 1; i < len(sp); i++ {
			if d := sp[i].at.Sub(sp[i-1].at); d != want[i-1]*time.Second {
				t.Errorf("gap %d = %v, want %v", i, d, want[i-1]*time.Second)
			}
			if sp[i].m.Type != MsgSCCRQ {
				t.Errorf("packet %d is %s", i, sp[i].m.Type)
			}
		}
		if total < 31*time.Second || total > 32*time.Second {
			t.Errorf("gave up after %v, want ~31s", total)
		}
	})
}

// scripted drives a LAC by hand inside a synctest bubble: the test plays
// the LNS.
type scripted struct {
	t              *testing.T
	started        time.Time
	l              *link
	lac            *LAC
	errc           chan error
	stop           context.CancelFunc
	ns             uint16 // our next Ns
	lacTID, lacSID uint16
}

func newScripted(t *testing.T) *scripted {
	s := &scripted{t: t, started: time.Now(), l: &link{}, errc: make(chan error, 1)}
	s.lac = NewLAC(Config{Clock: clock.Real}, s.l)
	ctx, cancel := context.WithCancel(context.Background())
	s.stop = cancel
	var done sync.WaitGroup
	done.Go(func() { s.errc <- s.lac.Run(ctx) })
	t.Cleanup(func() { cancel(); done.Wait() })
	m := s.expect(MsgSCCRQ)
	s.lacTID, _ = m.Uint16(AVPAssignedTunnelID)
	return s
}

// elapsed is how much of the bubble's time has passed since newScripted.
func (s *scripted) elapsed() time.Duration { return time.Since(s.started) }

// expect returns the latest message of type mt the LAC wrote; it must have
// been written without any time passing (checked once the bubble is idle).
func (s *scripted) expect(mt MessageType) *ControlMessage {
	s.t.Helper()
	synctest.Wait()
	var got *ControlMessage
	for _, sp := range s.l.packets() {
		if sp.m.Type == mt {
			got = sp.m
		}
	}
	if got == nil {
		s.t.Fatalf("LAC sent no %s (it sent %v)", mt, s.l.types())
	}
	return got
}

// send delivers b to the LAC with our next Ns and the Nr acking everything.
func (s *scripted) send(b *msgBuilder) {
	s.t.Helper()
	pkt, err := b.bytes()
	if err != nil {
		s.t.Fatal(err)
	}
	sp := s.l.packets()
	putNsNr(pkt, s.ns, sp[len(sp)-1].m.Ns+1)
	s.ns++
	s.lac.HandleControl(pkt)
}

func (s *scripted) sccrp(extra func(*msgBuilder)) {
	b := newMessage(MsgSCCRP, s.lacTID, 0).
		u16(AVPProtocolVersion, true, ProtocolVersion).
		u32(AVPFramingCapabilities, true, 3).
		str(AVPHostName, true, "peer").
		u16(AVPAssignedTunnelID, true, 77)
	if extra != nil {
		extra(b)
	}
	s.send(b)
}

// result is the LAC's Run result, which must have come without any time
// passing.
func (s *scripted) result() error {
	s.t.Helper()
	return returned(s.t, s.errc, "LAC")
}

func TestPeerStopCCN(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newScripted(t)
		s.sccrp(nil)
		s.expect(MsgSCCCN)
		s.send(newMessage(MsgStopCCN, s.lacTID, 0).
			resultCode(ResultCode{Result: StopCCNShuttingDown, HasError: true, Message: "server maintenance"}).
			u16(AVPAssignedTunnelID, true, 77))
		err := s.result()
		if !errors.Is(err, ErrTunnelClosed) || !strings.Contains(err.Error(), "server maintenance") ||
			!strings.Contains(err.Error(), "shut down") {
			t.Errorf("Run = %v", err)
		}
		sp := s.l.packets()
		if last := sp[len(sp)-1].m; !last.IsZLB() || last.Nr != 2 || last.TunnelID != 77 {
			t.Errorf("StopCCN not acked: %+v", last.Header)
		}
		if s.l.count(MsgStopCCN) != 0 {
			t.Error("answered StopCCN with StopCCN")
		}
	})
}

func TestTunnelAuthRejected(t *testing.T) {
	for _, tc := range []struct {
		name  string
		extra func(*msgBuilder)
	}{
		{"challenge", func(b *msgBuilder) { b.avp(AVPChallenge, true, []byte("0123456789abcdef")) }},
		{"hidden", func(b *msgBuilder) {
			b.avp(AVPRandomVector, true, []byte{1, 2, 3, 4})
			b.avp(AVPVendorName, false, []byte("xyz"))
			b.b[len(b.b)-9] |= 0x40 // H bit on the Vendor Name
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := newScripted(t)
				s.sccrp(tc.extra)
				stop := s.expect(MsgStopCCN)
				s.zlb()
				err := s.result()
				if !errors.Is(err, ErrTunnelAuthUnsupported) || !errors.Is(err, ErrProtocol) {
					t.Errorf("Run = %v", err)
				}
				rc, _ := stop.ResultCode()
				if stop.TunnelID != 77 || !strings.Contains(rc.Message, "tunnel authentication is not supported") {
					t.Errorf("StopCCN %+v %+v", stop.Header, rc)
				}
				if s.l.count(MsgSCCCN) != 0 {
					t.Error("sent SCCCN")
				}
			})
		})
	}
}

// toICRQ answers the LAC's SCCRQ, acknowledges its SCCCN and returns its
// ICRQ, whose Assigned Session ID it records.
func (s *scripted) toICRQ() *ControlMessage {
	s.sccrp(nil)
	s.expect(MsgSCCCN)
	s.zlb()
	icrq := s.expect(MsgICRQ)
	s.lacSID, _ = icrq.Uint16(AVPAssignedSessionID)
	return icrq
}

func (s *scripted) zlb() {
	sp := s.l.packets()
	s.lac.HandleControl(appendZLB(nil, s.lacTID, 0, s.ns, sp[len(sp)-1].m.Ns+1))
}

func TestUnknownMandatoryAVPInICRP(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newScripted(t)
		icrq := s.toICRQ()
		if icrq.TunnelID != 77 || icrq.SessionID != 0 || s.lacSID == 0 {
			t.Fatalf("ICRQ %+v", icrq.Header)
		}
		s.send(newMessage(MsgICRP, s.lacTID, s.lacSID).
			u16(AVPAssignedSessionID, true, 55).
			avp(99, true, []byte{1, 2}))
		cdn := s.expect(MsgCDN)
		stop := s.expect(MsgStopCCN)
		s.zlb()
		err := s.result()
		if d := s.elapsed(); d != 0 {
			t.Errorf("teardown waited %v", d)
		}
		if !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), "unknown mandatory AVP(99)") {
			t.Errorf("Run = %v", err)
		}
		rc, _ := cdn.ResultCode()
		if cdn.SessionID != 55 || rc.Result != CDNGeneralError || rc.Error != ErrCodeUnknownMandAVP {
			t.Errorf("CDN %+v %+v", cdn.Header, rc)
		}
		if v, _ := cdn.Uint16(AVPAssignedSessionID); v != s.lacSID {
			t.Errorf("CDN Assigned Session ID %d", v)
		}
		if rc, _ := stop.ResultCode(); rc.Error != ErrCodeUnknownMandAVP {
			t.Errorf("StopCCN %+v", rc)
		}
	})
}

// An unknown AVP without the M bit and a vendor AVP are ignored (§4.1).
func TestUnknownOptionalAVPIgnored(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newScripted(t)
		s.sccrp(func(b *msgBuilder) {
			b.avp(99, false, []byte{1})
			b.b = append(b.b, 0x00, 0x07, 0x01, 0x37, 0x00, 0x01, 0xff)
		})
		s.expect(MsgSCCCN)
		s.zlb()
		s.expect(MsgICRQ)
	})
}

func TestZeroAssignedTunnelID(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newScripted(t)
		b := newMessage(MsgSCCRP, s.lacTID, 0).
			u16(AVPProtocolVersion, true, ProtocolVersion).
			u32(AVPFramingCapabilities, true, 3).
			str(AVPHostName, true, "peer").
			u16(AVPAssignedTunnelID, true, 0)
		s.send(b)
		if err := s.result(); !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), "Assigned Tunnel ID 0") {
			t.Errorf("Run = %v", err)
		}
	})
}

// A peer that acknowledges (and even sends HELLOs) but never answers ICRQ:
// the LAC gives up HelloInterval after it started.
func TestSetupStallTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newScripted(t)
		s.sccrp(nil)
		s.expect(MsgSCCCN)
		s.zlb()
		s.expect(MsgICRQ)
		s.zlb()
		deadline := time.After(2 * time.Minute)
		var err error
	wait:
		for {
			select {
			case err = <-s.errc:
				break wait
			case <-time.After(5 * time.Second):
				s.send(newMessage(MsgHELLO, s.lacTID, 0))
			case <-deadline:
				t.Fatal("LAC did not give up within 2 minutes")
			}
		}
		el := s.elapsed()
		if !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "wait-call-reply") {
			t.Errorf("Run = %v", err)
		}
		if el < defaultHelloInterval || el > defaultHelloInterval+5*time.Second {
			t.Errorf("gave up after %v", el)
		}
	})
}

// FuzzLACReceive: arbitrary packets fed to an established LAC engine never
// panic, and whatever it writes parses.
func FuzzLACReceive(f *testing.F) {
	for _, path := range capturePaths(f) {
		for _, p := range readL2TPPcap(f, path) {
			if IsControl(p.l2tp) {
				f.Add(p.l2tp)
			}
		}
	}
	f.Fuzz(func(t *testing.T, pkt []byte) {
		l := &link{}
		e := newEngine(Config{Clock: clock.NewFake(time.Unix(0, 0)), RecvWindow: 4}, l, roleLAC)
		e.st, e.localTID, e.peerTID, e.localSID, e.peerSID = stSessionUp, 0x36ca, 0x78eb, 0x9933, 0xcd04
		e.nr = uint16(len(pkt) % 3)
		for i := 0; i < 3; i++ { // same packet at three sequence positions
			if e.receive(append([]byte(nil), pkt...)) != nil {
				break
			}
			e.flushAck()
			e.nr--
		}
		if l.bad != 0 {
			t.Fatal("engine wrote an unparsable packet")
		}
	})
}

// A server refusing the SCCRQ with StopCCN: ErrTunnelClosed, and the
// StopCCN is still acknowledged to the tunnel ID it announced.
func TestSCCRQRefused(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newScripted(t)
		s.send(newMessage(MsgStopCCN, s.lacTID, 0).
			resultCode(ResultCode{Result: StopCCNNotAuthorized}).
			u16(AVPAssignedTunnelID, true, 9))
		err := s.result()
		if !errors.Is(err, ErrTunnelClosed) || !strings.Contains(err.Error(), "not authorized") {
			t.Errorf("Run = %v", err)
		}
		sp := s.l.packets()
		if last := sp[len(sp)-1].m; !last.IsZLB() || last.TunnelID != 9 || last.Nr != 1 {
			t.Errorf("last packet %+v", last.Header)
		}
	})
}

// TestPeerActivityKeepsTunnel: while the peer's data arrives (PeerActivity
// grows), a LAC whose control channel to the peer is lost neither sends
// HELLOs nor gives up; once the data stops, the HELLO goes unanswered and
// Run ends with ErrTimeout.
func TestPeerActivityKeepsTunnel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var activity atomic.Uint64
		p := newPair(t, func(c *Config) {
			c.HelloInterval = 10 * time.Second
			c.PeerActivity = activity.Load
		}, func(c *Config) { c.HelloInterval = time.Hour })
		p.establish(t)
		p.down.setFilter(func(int, *ControlMessage) linkAction { return drop }) // LNS->LAC control lost
		hellos := p.up.count(MsgHELLO)
		for range 120 { // two minutes of data but no control traffic
			activity.Add(1)
			time.Sleep(time.Second)
		}
		synctest.Wait()
		select {
		case err := <-p.lacErr:
			t.Fatalf("LAC gave up while data was arriving: %v", err)
		default:
		}
		if n := p.up.count(MsgHELLO) - hellos; n != 0 {
			t.Errorf("%d HELLOs sent while data was arriving", n)
		}
		err := waitErr(t, p.lacErr, 200*time.Second, "LAC")
		if !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "HELLO") {
			t.Errorf("LAC Run = %v, want ErrTimeout for HELLO once the data stopped", err)
		}
	})
}
