package ike

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/l2tpproxy/l2tpproxy/tunnel/clock"
	"github.com/l2tpproxy/l2tpproxy/tunnel/esp"
)

// pipe is a Transport that hands each message to the peer, optionally
// dropping some by their index in this direction.
type pipe struct {
	mu      sync.Mutex
	peer    func([]byte)
	n       int
	drop    map[int]bool
	dropAll bool
	dropFn  func(msg []byte) bool
	sent    [][]byte
	natt    []bool
}

func (p *pipe) WriteIKE(msg []byte, natt bool) error {
	p.mu.Lock()
	i := p.n
	p.n++
	p.sent = append(p.sent, append([]byte(nil), msg...))
	p.natt = append(p.natt, natt)
	drop := p.dropAll || p.drop[i] || (p.dropFn != nil && p.dropFn(msg))
	peer := p.peer
	p.mu.Unlock()
	if !drop && peer != nil {
		peer(append([]byte(nil), msg...))
	}
	return nil
}

func (p *pipe) messages() ([][]byte, []bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([][]byte(nil), p.sent...), append([]bool(nil), p.natt...)
}

type pair struct {
	ini        *Initiator
	resp       *Responder
	toResp     *pipe
	toIni      *pipe
	iErr, rErr chan error
	iCancel    context.CancelFunc
	rCancel    context.CancelFunc
}

var (
	clientAddr = netip.MustParseAddrPort("192.168.1.10:40000")
	serverAddr = netip.MustParseAddrPort("203.0.113.5:500")
)

// newPair makes an initiator and a responder joined by pipes. Call it in a
// synctest bubble: both run on clock.Real, there the bubble's fake time,
// which moves only when every goroutine of the bubble is blocked.
func newPair(t *testing.T, icfg Config, rcfg ResponderConfig) *pair {
	t.Helper()
	p := &pair{toResp: &pipe{drop: map[int]bool{}}, toIni: &pipe{drop: map[int]bool{}},
		iErr: make(chan error, 1), rErr: make(chan error, 1)}
	if icfg.PSK == nil {
		icfg.PSK = []byte("testpsk")
	}
	icfg.LocalAddr, icfg.RemoteAddr, icfg.Clock = clientAddr, serverAddr, clock.Real
	if rcfg.PSK == nil {
		rcfg.PSK = []byte("testpsk")
	}
	rcfg.LocalAddr, rcfg.Clock = serverAddr, clock.Real
	var err error
	if p.ini, err = NewInitiator(icfg, p.toResp); err != nil {
		t.Fatal(err)
	}
	if p.resp, err = NewResponder(rcfg, p.toIni); err != nil {
		t.Fatal(err)
	}
	p.toResp.peer = p.resp.HandlePacket
	p.toIni.peer = p.ini.HandlePacket
	return p
}

func (p *pair) start(t *testing.T) {
	ictx, icancel := context.WithCancel(context.Background())
	rctx, rcancel := context.WithCancel(context.Background())
	p.iCancel, p.rCancel = icancel, rcancel
	go func() { p.rErr <- p.resp.Run(rctx) }()
	go func() { p.iErr <- p.ini.Run(ictx) }()
	t.Cleanup(func() { icancel(); rcancel() })
}

// laterLimit is the most bubble time a wait with later lets pass: about
// what the fake clock of the harness before synctest (one second every
// 20 ms of real time, for 10 s) allowed.
const laterLimit = 500 * time.Second

// waitEvent returns the next event of type T on ch, skipping others.
// Without later it must come before the bubble's time moves: once every
// goroutine of the bubble is idle it is there, or the test fails. With
// later, time may pass (timers fire: retransmissions, lifetimes, rekeys),
// up to laterLimit.
func waitEvent[T Event](t *testing.T, p *pair, ch <-chan Event, later bool) T {
	t.Helper()
	var zero T
	limit := time.NewTimer(laterLimit)
	defer limit.Stop()
	for {
		var ev Event
		if later {
			select {
			case ev = <-ch:
			case err := <-p.iErr:
				return ended[T](t, p.iErr, err, ch, "initiator")
			case err := <-p.rErr:
				return ended[T](t, p.rErr, err, ch, "responder")
			case <-limit.C:
				t.Fatalf("no %T event within %v", zero, laterLimit)
			}
		} else {
			synctest.Wait()
			select {
			case ev = <-ch:
			case err := <-p.iErr:
				return ended[T](t, p.iErr, err, ch, "initiator")
			case err := <-p.rErr:
				return ended[T](t, p.rErr, err, ch, "responder")
			default:
				t.Fatalf("no %T event, and nothing more happens unless time passes", zero)
			}
		}
		if v, ok := ev.(T); ok {
			return v
		}
	}
}

// ended is waitEvent's answer when a Run has ended with err: the event if
// it is among those Run left on ch, else a failure. It puts err back for a
// later waitErr.
func ended[T Event](t *testing.T, errs chan error, err error, ch <-chan Event, who string) T {
	t.Helper()
	errs <- err
	v, ok := pendingEvent[T](ch)
	if !ok {
		t.Fatalf("%s ended: %v", who, err)
	}
	return v
}

// pendingEvent takes the events already queued on ch (Run has ended: they
// are all there) and returns the first of type T.
func pendingEvent[T Event](ch <-chan Event) (T, bool) {
	for {
		select {
		case ev := <-ch:
			if v, ok := ev.(T); ok {
				return v, true
			}
		default:
			var zero T
			return zero, false
		}
	}
}

// waitErr returns what the Run behind ch returned; with later as in
// waitEvent.
func waitErr(t *testing.T, ch chan error, later bool) error {
	t.Helper()
	if !later {
		synctest.Wait()
		select {
		case err := <-ch:
			return err
		default:
			t.Fatal("Run has not returned, and nothing more happens unless time passes")
		}
	}
	limit := time.NewTimer(laterLimit)
	defer limit.Stop()
	select {
	case err := <-ch:
		return err
	case <-limit.C:
		t.Fatalf("Run did not return within %v", laterLimit)
	}
	return nil
}

func checkKeysMatch(t *testing.T, ic, rc ChildSA) {
	t.Helper()
	eq := func(a, b esp.Keys) bool {
		return a.SPI == b.SPI && a.Alg == b.Alg && bytes.Equal(a.EncKey, b.EncKey) && bytes.Equal(a.AuthKey, b.AuthKey)
	}
	if !eq(ic.Inbound, rc.Outbound) || !eq(ic.Outbound, rc.Inbound) {
		t.Fatalf("keys differ:\n ini %+v\n resp %+v", ic, rc)
	}
	if ic.Inbound.SPI < 256 || ic.Outbound.SPI < 256 || ic.Inbound.SPI == ic.Outbound.SPI {
		t.Fatalf("bad SPIs %08x %08x", ic.Inbound.SPI, ic.Outbound.SPI)
	}
	if len(ic.Inbound.EncKey) == 0 || bytes.Equal(ic.Inbound.EncKey, ic.Outbound.EncKey) {
		t.Fatal("directions share keys")
	}
}

func TestSessionSuccessDPDAndShutdown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPair(t, Config{}, ResponderConfig{})
		p.start(t)
		up := waitEvent[Phase1Up](t, p, p.ini.Events(), false)
		if up.Suite != "AES-CBC-256/HMAC-SHA2-512/MODP2048" { // the first of DefaultPhase1
			t.Errorf("suite %q", up.Suite)
		}
		waitEvent[Phase1Up](t, p, p.resp.Events(), false)
		ic := waitEvent[ChildSAUp](t, p, p.ini.Events(), false).Child
		rc := waitEvent[ChildSAUp](t, p, p.resp.Events(), false).Child
		checkKeysMatch(t, ic, rc)
		if ic.EncapMode != EncapUDPTransport || ic.Lifetime != time.Hour {
			t.Errorf("encap %d lifetime %v", ic.EncapMode, ic.Lifetime)
		}
		if ic.Inbound.Alg != DefaultPhase2[0] {
			t.Errorf("alg %v", ic.Inbound.Alg)
		}
		// MM1, MM3 on 500; MM5 and later on 4500.
		_, natt := p.toResp.messages()
		if natt[0] || natt[1] || !natt[2] || !natt[3] {
			t.Errorf("natt flags %v", natt)
		}
		// DPD: the responder asks, the initiator acks.
		re := p.resp.r
		re.do <- func() {
			sa := re.sas.current()
			_ = sa.sendInformational(func(b *builder) {
				b.add(PayloadNotify, Notify{DOI: 1, Protocol: 1, Type: NotifyRUThere, SPI: sa.cookies(), Data: []byte{0, 0, 0, 7}}.encode())
			})
		}
		synctest.Wait()
		if re.dpdAcks.Load() == 0 {
			t.Fatal("no R-U-THERE-ACK")
		}
		// Shutdown: Delete(ESP) then Delete(ISAKMP).
		p.iCancel()
		if err := waitErr(t, p.iErr, false); err != nil {
			t.Fatalf("initiator Run: %v", err)
		}
		del := waitEvent[ChildSADeleted](t, p, p.resp.Events(), false)
		if del.InboundSPI != rc.Inbound.SPI {
			t.Errorf("deleted %08x, want %08x", del.InboundSPI, rc.Inbound.SPI)
		}
		if err := waitErr(t, p.rErr, false); !errors.Is(err, ErrDeleted) {
			t.Fatalf("responder: %v", err)
		}
	})
}

func TestSessionWrongPSK(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPair(t, Config{PSK: []byte("secret-one")}, ResponderConfig{PSK: []byte("secret-two")})
		p.start(t)
		err := waitErr(t, p.iErr, false)
		if !errors.Is(err, ErrAuthFailed) {
			t.Fatalf("initiator: %v", err)
		}
		if strings.Contains(err.Error(), "secret") {
			t.Fatal("PSK in error text")
		}
		if err := waitErr(t, p.rErr, false); !errors.Is(err, ErrAuthFailed) {
			t.Fatalf("responder: %v", err)
		}
	})
}

// With the responder silent after MM4 (a server that drops MM5 it cannot
// decrypt), the initiator gives up with ErrAuthFailed after retransmitting MM5.
func TestSessionNoMM6(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPair(t, Config{PSK: []byte("a")}, ResponderConfig{PSK: []byte("b")})
		p.toResp.dropFn = func(m []byte) bool { return m[19]&FlagEncryption != 0 }
		p.start(t)
		if err := waitErr(t, p.iErr, true); !errors.Is(err, ErrAuthFailed) || !strings.Contains(err.Error(), "PSK mismatch likely") {
			t.Fatalf("initiator: %v", err)
		}
	})
}

func TestSessionNoProposalPhase1(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPair(t, Config{}, ResponderConfig{Phase1: []Phase1Transform{{Enc: EncDES, Hash: 1, Group: 2}}})
		p.start(t)
		err := waitErr(t, p.iErr, false)
		if !errors.Is(err, ErrNoProposalChosen) || !strings.Contains(err.Error(), "offered AES-CBC-256/SHA2-512/MODP2048, AES-CBC-256/SHA2-256/ECP384, ") {
			t.Fatalf("initiator: %v", err)
		}
	})
}

func TestSessionNoProposalPhase2(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPair(t, Config{Phase2: []esp.Algorithm{{Enc: esp.EncAESCBC, EncKeyBits: 256, Auth: esp.AuthHMACSHA256}}},
			ResponderConfig{Phase2: []esp.Algorithm{{Enc: esp.EncAESCBC, EncKeyBits: 128, Auth: esp.AuthHMACMD5}}})
		p.start(t)
		err := waitErr(t, p.iErr, false)
		if !errors.Is(err, ErrNoProposalChosen) || !strings.Contains(err.Error(), "phase 2: offered AES-CBC-256/HMAC-SHA2-256-128") {
			t.Fatalf("initiator: %v", err)
		}
	})
}

// TestSessionRetransmission drops the first MM3, MM6, QM1 and QM3; the
// initiator's and responder's retransmissions (and replies to duplicates)
// recover.
func TestSessionRetransmission(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// 3DES/SHA1/MODP1024 and 3DES ESP also exercise the 8-byte block path
		// and Appendix-B expansion (24-byte key from a 20-byte SKEYID_e).
		p1 := []Phase1Transform{{Enc: Enc3DES, Hash: 2, Group: 2}}
		p2 := []esp.Algorithm{{Enc: esp.Enc3DES, EncKeyBits: 192, Auth: esp.AuthHMACSHA1}}
		p := newPair(t, Config{Phase1: p1, Phase2: p2}, ResponderConfig{Phase1: p1, Phase2: p2})
		p.toResp.drop = map[int]bool{1: true} // MM3
		p.toIni.drop = map[int]bool{1: true}  // MM4
		p.start(t)
		waitEvent[Phase1Up](t, p, p.ini.Events(), true)
		ic := waitEvent[ChildSAUp](t, p, p.ini.Events(), true).Child
		rc := waitEvent[ChildSAUp](t, p, p.resp.Events(), true).Child
		checkKeysMatch(t, ic, rc)
	})
}

func TestSessionRetransmissionQuickMode(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPair(t, Config{}, ResponderConfig{})
		p.toResp.drop = map[int]bool{3: true, 5: true} // QM1, first QM3
		p.toIni.drop = map[int]bool{2: true}           // MM6
		p.start(t)
		ic := waitEvent[ChildSAUp](t, p, p.ini.Events(), true).Child
		rc := waitEvent[ChildSAUp](t, p, p.resp.Events(), true).Child
		checkKeysMatch(t, ic, rc)
	})
}

func TestSessionSilentPeer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPair(t, Config{}, ResponderConfig{})
		p.toResp.dropAll = true
		p.start(t)
		err := waitErr(t, p.iErr, true)
		if !errors.Is(err, ErrTimeout) {
			t.Fatalf("initiator: %v", err)
		}
		msgs, _ := p.toResp.messages()
		if len(msgs) != maxTries {
			t.Fatalf("%d transmissions of MM1, want %d", len(msgs), maxTries)
		}
		for _, m := range msgs[1:] {
			if !bytes.Equal(m, msgs[0]) {
				t.Fatal("retransmission differs")
			}
		}
	})
}

// TestSessionRekey lets the ESP SA approach its lifetime: the initiator runs
// a new Quick Mode, reports the new SA and deletes the old one.
func TestSessionRekey(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPair(t, Config{Phase2Lifetime: 100 * time.Second}, ResponderConfig{})
		p.start(t)
		first := waitEvent[ChildSAUp](t, p, p.ini.Events(), false).Child
		waitEvent[ChildSAUp](t, p, p.resp.Events(), false)
		second := waitEvent[ChildSAUp](t, p, p.ini.Events(), true).Child
		rc := waitEvent[ChildSAUp](t, p, p.resp.Events(), true).Child
		checkKeysMatch(t, second, rc)
		if second.Inbound.SPI == first.Inbound.SPI {
			t.Fatal("same SPI after rekey")
		}
		// The replaced SA lives on for retireDelay (packets sealed with it
		// may still be on their way), then goes with a Delete.
		installed := time.Now()
		del := waitEvent[ChildSADeleted](t, p, p.ini.Events(), true)
		if del.InboundSPI != first.Inbound.SPI {
			t.Fatalf("deleted %08x", del.InboundSPI)
		}
		if d := time.Since(installed); d != retireDelay {
			t.Errorf("the replaced SA was deleted %v after the new one was up, want %v", d, retireDelay)
		}
		rdel := waitEvent[ChildSADeleted](t, p, p.resp.Events(), false)
		if rdel.InboundSPI == rc.Inbound.SPI {
			t.Fatal("responder deleted the new SA")
		}
	})
}

func TestNewInitiatorValidation(t *testing.T) {
	tr := &pipe{}
	good := Config{PSK: []byte("x"), LocalAddr: clientAddr, RemoteAddr: serverAddr}
	if _, err := NewInitiator(good, tr); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]Config{
		"no psk":    {LocalAddr: clientAddr, RemoteAddr: serverAddr},
		"no remote": {PSK: []byte("x"), LocalAddr: clientAddr},
		"bad group": {PSK: []byte("x"), LocalAddr: clientAddr, RemoteAddr: serverAddr, Phase1: []Phase1Transform{{Enc: EncAESCBC, KeyBits: 128, Hash: 2, Group: 24}}},
		"bad esp":   {PSK: []byte("x"), LocalAddr: clientAddr, RemoteAddr: serverAddr, Phase2: []esp.Algorithm{{Enc: esp.EncAESCBC, EncKeyBits: 100, Auth: 2}}},
	} {
		if _, err := NewInitiator(c, tr); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestSessionServerDeletesESP: the server deletes our only ESP SA but keeps
// the ISAKMP SA. After renewGrace the initiator negotiates a new SA itself.
func TestSessionServerDeletesESP(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPair(t, Config{}, ResponderConfig{})
		p.start(t)
		first := waitEvent[ChildSAUp](t, p, p.ini.Events(), false).Child
		waitEvent[ChildSAUp](t, p, p.resp.Events(), false)
		if err := p.resp.DeleteChildSAs(context.Background()); err != nil {
			t.Fatal(err)
		}
		if del := waitEvent[ChildSADeleted](t, p, p.resp.Events(), false); del.ByPeer {
			t.Errorf("responder's own delete reported as the peer's: %+v", del)
		}
		del := waitEvent[ChildSADeleted](t, p, p.ini.Events(), false)
		if del.InboundSPI != first.Inbound.SPI || !del.ByPeer {
			t.Fatalf("initiator saw %+v, want SPI %08x by peer", del, first.Inbound.SPI)
		}
		second := waitEvent[ChildSAUp](t, p, p.ini.Events(), true).Child
		rc := waitEvent[ChildSAUp](t, p, p.resp.Events(), false).Child
		checkKeysMatch(t, second, rc)
		if second.Inbound.SPI == first.Inbound.SPI {
			t.Fatal("same SPI")
		}
	})
}

// TestSessionServerStops: ESP Deletes followed by the ISAKMP Delete end the
// initiator with ErrDeleted and no new Quick Mode.
func TestSessionServerStops(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPair(t, Config{}, ResponderConfig{})
		p.start(t)
		waitEvent[ChildSAUp](t, p, p.ini.Events(), false)
		waitEvent[ChildSAUp](t, p, p.resp.Events(), false)
		p.rCancel()
		if err := waitErr(t, p.iErr, true); !errors.Is(err, ErrDeleted) {
			t.Fatalf("initiator: %v", err)
		}
		msgs, _ := p.toResp.messages()
		if n := quickModes(msgs); n != 1 {
			t.Errorf("initiator ran %d Quick Modes, want 1", n)
		}
	})
}

// quickModes counts the distinct Quick Mode exchanges (M-IDs) in msgs.
func quickModes(msgs [][]byte) int {
	mids := map[uint32]bool{}
	for _, raw := range msgs {
		if m, err := Parse(raw); err == nil && m.Exchange == ExchangeQuickMode {
			mids[m.MessageID] = true
		}
	}
	return len(mids)
}

// pfsPair runs a pair with the given PFS settings up to the first ESP SA,
// whose keys must match on both sides.
func pfsPair(t *testing.T, mode PFS, require bool) (*pair, ChildSA) {
	t.Helper()
	p := newPair(t, Config{PFS: mode}, ResponderConfig{RequirePFS: require})
	p.start(t)
	ic := waitEvent[ChildSAUp](t, p, p.ini.Events(), false).Child
	rc := waitEvent[ChildSAUp](t, p, p.resp.Events(), false).Child
	checkKeysMatch(t, ic, rc)
	return p, ic
}

// TestSessionPFS: with PFS on, QM1 and QM2 carry KE payloads and the ESP
// keys include g(qm)^xy; both sides derive the same keys.
func TestSessionPFS(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var withKE, without esp.Keys
		for _, mode := range []PFS{PFSOn, PFSOff} {
			p, ic := pfsPair(t, mode, false)
			ch := make(chan [][]byte)
			p.ini.r.do <- func() {
				var gxys [][]byte
				for _, q := range p.ini.r.sas.current().qms {
					gxys = append(gxys, q.gxy)
				}
				ch <- gxys
			}
			got := <-ch
			if (len(got) == 1 && len(got[0]) == 256) != (mode == PFSOn) {
				t.Errorf("PFS %v: g(qm)^xy lengths %v", mode, got)
			}
			if mode == PFSOn {
				withKE = ic.Inbound
			} else {
				without = ic.Inbound
			}
		}
		if len(withKE.EncKey) == 0 || len(without.EncKey) == 0 {
			t.Fatal("no keys")
		}
	})
}

// TestSessionPFSRequired: a responder that requires PFS refuses our first
// Quick Mode (no KE); in auto mode we retry once with PFS and succeed; with
// PFS off we fail with ErrNoProposalChosen.
func TestSessionPFSRequired(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, _ := pfsPair(t, PFSAuto, true)
		if n := quickModes(mustMessages(p.toResp)); n != 2 {
			t.Errorf("%d Quick Modes, want 2 (without PFS, then with)", n)
		}

		p = newPair(t, Config{PFS: PFSOff}, ResponderConfig{RequirePFS: true})
		p.start(t)
		if err := waitErr(t, p.iErr, false); !errors.Is(err, ErrNoProposalChosen) || !strings.Contains(err.Error(), "phase 2") {
			t.Fatalf("initiator: %v", err)
		}
	})
}

func mustMessages(p *pipe) [][]byte {
	m, _ := p.messages()
	return m
}

// TestSessionServerDeletesIKESA: the responder deletes the ISAKMP SA alone
// (its lifetime ended). The initiator's Run goes on: it negotiates a second
// IKE SA in its table (new cookies) and a new ESP SA on it.
func TestSessionServerDeletesIKESA(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPair(t, Config{}, ResponderConfig{})
		p.start(t)
		first := waitEvent[ChildSAUp](t, p, p.ini.Events(), false).Child
		waitEvent[ChildSAUp](t, p, p.resp.Events(), false)
		// A real server answers the next Main Mode with a new responder state.
		next, err := NewResponder(ResponderConfig{PSK: []byte("testpsk"), LocalAddr: serverAddr, Clock: clock.Real}, p.toIni)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.resp.DeleteISAKMPSA(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := waitErr(t, p.rErr, false); err != nil {
			t.Fatalf("responder: %v", err)
		}
		p.toResp.mu.Lock()
		p.toResp.peer = next.HandlePacket
		p.toResp.mu.Unlock()
		p.resp = next
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		go func() { p.rErr <- next.Run(ctx) }()

		waitEvent[Phase1Up](t, p, p.ini.Events(), true)
		second := waitEvent[ChildSAUp](t, p, p.ini.Events(), true).Child
		checkKeysMatch(t, second, waitEvent[ChildSAUp](t, p, next.Events(), false).Child)
		if second.Inbound.SPI == first.Inbound.SPI {
			t.Fatal("same SPI")
		}
		msgs := mustMessages(p.toResp)
		cookies := map[[8]byte]bool{}
		for _, raw := range msgs {
			if m, err := Parse(raw); err == nil {
				cookies[m.ICookie] = true
			}
		}
		if len(cookies) != 2 {
			t.Errorf("%d initiator cookies, want 2 (two IKE SAs)", len(cookies))
		}
		select {
		case err := <-p.iErr:
			t.Fatalf("initiator ended: %v", err)
		default:
		}
	})
}
