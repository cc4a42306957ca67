package ike

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// onRun runs f on r's Run goroutine and returns its result.
func onRun[T any](r *runner, f func() T) T {
	ch := make(chan T, 1)
	r.do <- func() { ch <- f() }
	return <-ch
}

// tableShape reports the SAs in r's table: how many, and the ESP SAs of
// the current one.
func tableShape(r *runner) (sas, children int) {
	v := onRun(r, func() [2]int {
		n := 0
		if cur := r.sas.current(); cur != nil {
			n = len(cur.children)
		}
		return [2]int{len(r.sas.sas), n}
	})
	return v[0], v[1]
}

// waitTable checks, once every goroutine of the bubble is idle, that r's
// table has sas SAs and the current one children ESP SAs.
func waitTable(t *testing.T, r *runner, sas, children int) {
	t.Helper()
	synctest.Wait()
	if s, c := tableShape(r); s != sas || c != children {
		t.Fatalf("table has %d SAs, current with %d ESP SAs; want %d and %d", s, c, sas, children)
	}
}

// TestSessionRekeyIKESA: near the end of the ISAKMP SA's lifetime the
// initiator negotiates a new one while the old one still stands
// (make-before-break), moves the ESP SA to it and deletes the old one;
// the responder keeps the ESP SA under the new SA too, so a Delete of it
// sent later through the new SA reaches the initiator's ESP SA.
func TestSessionRekeyIKESA(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPair(t, Config{Phase1Lifetime: 100 * time.Second}, ResponderConfig{})
		p.start(t)
		waitEvent[Phase1Up](t, p, p.ini.Events(), false)
		first := waitEvent[ChildSAUp](t, p, p.ini.Events(), false).Child
		waitEvent[Phase1Up](t, p, p.resp.Events(), false)
		waitEvent[ChildSAUp](t, p, p.resp.Events(), false)
		waitEvent[Phase1Up](t, p, p.ini.Events(), true) // the rekeyed IKE SA, ~90 s later
		waitEvent[Phase1Up](t, p, p.resp.Events(), false)
		waitTable(t, p.ini.r, 1, 1)
		waitTable(t, p.resp.r, 1, 1)
		cookies := map[[8]byte]bool{}
		for _, raw := range mustMessages(p.toResp) {
			if m, err := Parse(raw); err == nil {
				cookies[m.ICookie] = true
			}
		}
		if len(cookies) != 2 {
			t.Fatalf("%d IKE SAs, want 2", len(cookies))
		}
		if n := quickModes(mustMessages(p.toResp)); n != 1 {
			t.Errorf("%d Quick Modes: the ESP SA should have moved, not been renegotiated", n)
		}
		if err := p.resp.DeleteChildSAs(context.Background()); err != nil {
			t.Fatal(err)
		}
		if del := waitEvent[ChildSADeleted](t, p, p.ini.Events(), false); del.InboundSPI != first.Inbound.SPI || !del.ByPeer {
			t.Fatalf("initiator saw %+v, want SPI %08x deleted by the peer", del, first.Inbound.SPI)
		}
	})
}

// TestSessionServerStartsMainMode: the server reauthenticates: it starts
// a Main Mode of its own while the first IKE SA carries traffic, then a
// Quick Mode on the new SA, then deletes the old SA. The client answers in
// the responder role, installs the new ESP SA and keeps running with the
// old ESP SA moved to the new IKE SA.
func TestSessionServerStartsMainMode(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPair(t, Config{}, ResponderConfig{})
		p.resp.r.remote = clientAddr // the server's NAT-D of us
		p.start(t)
		waitEvent[ChildSAUp](t, p, p.ini.Events(), false)
		waitEvent[ChildSAUp](t, p, p.resp.Events(), false)
		old := serverStartsMainMode(t, p)
		waitEvent[Phase1Up](t, p, p.ini.Events(), false)
		second := waitEvent[ChildSAUp](t, p, p.ini.Events(), false).Child
		checkKeysMatch(t, second, waitEvent[ChildSAUp](t, p, p.resp.Events(), false).Child)
		waitTable(t, p.ini.r, 2, 1)
		onRun(p.resp.r, func() bool { // the server deletes the old ISAKMP SA
			old.sendDeleteISAKMP()
			p.resp.r.sas.remove(old)
			return true
		})
		waitTable(t, p.ini.r, 1, 2)
		select {
		case err := <-p.iErr:
			t.Fatalf("initiator ended: %v", err)
		default:
		}
	})
}

// TestSessionServerDeletesOldSAFirst: the server starts a new Main Mode
// and deletes the old ISAKMP SA before the new one is up (break before
// make). The client waits for the new SA, which takes the ESP SA over: no
// renewal of its own, Run goes on.
func TestSessionServerDeletesOldSAFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPair(t, Config{}, ResponderConfig{})
		p.resp.r.remote = clientAddr
		p.start(t)
		waitEvent[ChildSAUp](t, p, p.ini.Events(), false)
		waitEvent[ChildSAUp](t, p, p.resp.Events(), false)
		// The server's MM1 gets through, its MM3 is held back until the old
		// SA is deleted.
		mm := 0
		p.toIni.mu.Lock()
		p.toIni.dropFn = func(msg []byte) bool {
			if m, err := Parse(msg); err == nil && m.Exchange == ExchangeIdentityProtection {
				mm++
				return mm > 1
			}
			return false
		}
		p.toIni.mu.Unlock()
		serverReauth(t, p)
		waitTable(t, p.ini.r, 1, 0) // the old SA is gone, the new one not up yet
		p.toIni.mu.Lock()
		p.toIni.dropFn = nil
		p.toIni.mu.Unlock()
		// The server retransmits MM3 after 1 s.
		waitEvent[Phase1Up](t, p, p.ini.Events(), true)
		waitEvent[ChildSAUp](t, p, p.ini.Events(), true)
		waitTable(t, p.ini.r, 1, 2)
		select {
		case err := <-p.iErr:
			t.Fatalf("initiator ended: %v", err)
		default:
		}
	})
}

// TestSessionResponderLifetime: the server answers with a phase-1
// RESPONDER-LIFETIME of 100 s (RFC 2407 §4.6.3.1) although we offered 8 h:
// the client rekeys its IKE SA before those 100 s are up.
func TestSessionResponderLifetime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPair(t, Config{}, ResponderConfig{})
		p.start(t)
		waitEvent[Phase1Up](t, p, p.ini.Events(), false)
		waitEvent[ChildSAUp](t, p, p.ini.Events(), false)
		onRun(p.resp.r, func() error {
			attrs := appendAttr(appendAttr(nil, attrLifeType, lifeSeconds), attrLifeDur, 100)
			return p.resp.r.sas.current().sendNotify(NotifyResponderLifetime, attrs)
		})
		start := time.Now()
		waitEvent[Phase1Up](t, p, p.ini.Events(), true)
		if d := time.Since(start); d > 100*time.Second {
			t.Errorf("IKE SA rekeyed after %v, want before 100 s", d)
		}
	})
}

// clientQuickModes lets through only the Quick Modes the client starts:
// the server's own (its test code starts one when a new SA of its own is
// up without ESP SAs) never reach the client, nor, while held, its replies
// to the client's. It returns how many the client started and the switch.
func clientQuickModes(p *pair) (started func() int, hold func(bool)) {
	var mu sync.Mutex
	ours, held := map[uint32]bool{}, false
	quickMode := func(msg []byte) (uint32, bool) {
		m, err := Parse(msg)
		if err != nil || m.Exchange != ExchangeQuickMode {
			return 0, false
		}
		return m.MessageID, true
	}
	p.toResp.mu.Lock()
	p.toResp.dropFn = func(msg []byte) bool {
		if mid, ok := quickMode(msg); ok {
			mu.Lock()
			ours[mid] = true
			mu.Unlock()
		}
		return false
	}
	p.toResp.mu.Unlock()
	p.toIni.mu.Lock()
	p.toIni.dropFn = func(msg []byte) bool {
		mid, ok := quickMode(msg)
		mu.Lock()
		defer mu.Unlock()
		return ok && (held || !ours[mid])
	}
	p.toIni.mu.Unlock()
	started = func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(ours)
	}
	hold = func(h bool) {
		mu.Lock()
		held = h
		mu.Unlock()
	}
	return started, hold
}

// serverStartsMainMode makes the server start a new Main Mode (the old
// IKE SA stays) and returns the SA it had.
func serverStartsMainMode(t *testing.T, p *pair) *ikeSA {
	return onRun(p.resp.r, func() *ikeSA {
		old := p.resp.r.sas.current()
		if _, err := p.resp.r.startMainMode(); err != nil {
			t.Error(err)
		}
		return old
	})
}

// serverReauth makes the server re-authenticate as strongSwan does: a new
// Main Mode, and the old ISAKMP SA deleted before the new one is up.
func serverReauth(t *testing.T, p *pair) {
	onRun(p.resp.r, func() bool {
		old := p.resp.r.sas.current()
		if _, err := p.resp.r.startMainMode(); err != nil {
			t.Error(err)
		}
		old.sendDeleteISAKMP()
		p.resp.r.sas.remove(old)
		return true
	})
}

// TestSessionServerReauthAfterDeletingESP: the server deletes our only ESP
// SA and, before our renewal is due, re-authenticates (serverReauth), with
// no Quick Mode of its own: it has no ESP SA left to move. The renewal the
// old SA owed passes to the new one: after renewGrace the client
// negotiates a new ESP SA under it, and Run goes on. (Without the renewal
// the fake clock runs on until the server's Quick Mode gives up, 31 s:
// "responder ended".)
func TestSessionServerReauthAfterDeletingESP(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPair(t, Config{}, ResponderConfig{})
		p.resp.r.remote = clientAddr
		p.start(t)
		first := waitEvent[ChildSAUp](t, p, p.ini.Events(), false).Child
		waitEvent[ChildSAUp](t, p, p.resp.Events(), false)
		clientQuickModes(p)
		if err := p.resp.DeleteChildSAs(context.Background()); err != nil {
			t.Fatal(err)
		}
		if del := waitEvent[ChildSADeleted](t, p, p.ini.Events(), false); del.InboundSPI != first.Inbound.SPI || !del.ByPeer {
			t.Fatalf("initiator saw %+v, want SPI %08x deleted by the peer", del, first.Inbound.SPI)
		}
		serverReauth(t, p) // within renewGrace
		waitEvent[Phase1Up](t, p, p.ini.Events(), false)
		second := waitEvent[ChildSAUp](t, p, p.ini.Events(), true).Child
		if !second.Initiated {
			t.Errorf("the new ESP SA %08x is not the client's", second.Inbound.SPI)
		}
		waitTable(t, p.ini.r, 1, 1)
		select {
		case err := <-p.iErr:
			t.Fatalf("initiator ended: %v", err)
		default:
		}
	})
}

// TestSessionServerReauthDuringRenewal: as above, but the re-authentication
// comes while the client's renewal Quick Mode is under way on the old SA
// (its QM2 held back): that Quick Mode dies with the old SA, so the client
// starts another one under the new SA.
func TestSessionServerReauthDuringRenewal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPair(t, Config{}, ResponderConfig{})
		p.resp.r.remote = clientAddr
		p.start(t)
		waitEvent[ChildSAUp](t, p, p.ini.Events(), false)
		waitEvent[ChildSAUp](t, p, p.resp.Events(), false)
		started, hold := clientQuickModes(p)
		hold(true)
		if err := p.resp.DeleteChildSAs(context.Background()); err != nil {
			t.Fatal(err)
		}
		waitEvent[ChildSADeleted](t, p, p.ini.Events(), false)
		time.Sleep(renewGrace) // the renewal
		synctest.Wait()
		if started() == 0 {
			t.Fatalf("no renewal Quick Mode %v after the Delete", renewGrace)
		}
		serverReauth(t, p)
		waitEvent[Phase1Up](t, p, p.ini.Events(), false)
		hold(false)
		second := waitEvent[ChildSAUp](t, p, p.ini.Events(), true).Child
		if !second.Initiated {
			t.Errorf("the new ESP SA %08x is not the client's", second.Inbound.SPI)
		}
		if n := started(); n < 2 {
			t.Errorf("%d Quick Modes from the client, want the renewal and one more under the new SA", n)
		}
		waitTable(t, p.ini.r, 1, 1)
	})
}

// TestSessionServerReauthDuringRekey: the server re-authenticates while
// the client's rekey of its ESP SA (at 90% of 100 s) is under way on the
// old IKE SA (its QM2 held back): that Quick Mode dies with the old SA,
// and the ESP SA, which moved to the new one, is rekeyed again there.
func TestSessionServerReauthDuringRekey(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPair(t, Config{Phase2Lifetime: 100 * time.Second}, ResponderConfig{})
		p.resp.r.remote = clientAddr
		p.start(t)
		first := waitEvent[ChildSAUp](t, p, p.ini.Events(), false).Child
		waitEvent[ChildSAUp](t, p, p.resp.Events(), false)
		started, hold := clientQuickModes(p)
		hold(true)
		time.Sleep(90 * time.Second) // the rekey, at 90% of the lifetime
		synctest.Wait()
		if started() == 0 {
			t.Fatal("no rekey Quick Mode at 90 s")
		}
		serverReauth(t, p)
		waitEvent[Phase1Up](t, p, p.ini.Events(), false)
		waitTable(t, p.ini.r, 1, 1) // the old IKE SA gone, its ESP SA moved
		hold(false)
		second := waitEvent[ChildSAUp](t, p, p.ini.Events(), true).Child
		if !second.Initiated || second.Inbound.SPI == first.Inbound.SPI {
			t.Errorf("new ESP SA %+v, want the client's rekey of %08x", second, first.Inbound.SPI)
		}
		if del := waitEvent[ChildSADeleted](t, p, p.ini.Events(), true); del.InboundSPI != first.Inbound.SPI {
			t.Errorf("deleted %08x, want the rekeyed %08x", del.InboundSPI, first.Inbound.SPI)
		}
	})
}

// TestSessionChildExpiresSilently: the server drops our ESP SA without a
// Delete (strongSwan does so with the old IKE SA's SAs when it
// re-authenticates) and we do not rekey it ourselves (the server had
// replaced it). A tenth of its 100 s lifetime after the end the client
// forgets it and, that being its last, negotiates a new one.
func TestSessionChildExpiresSilently(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPair(t, Config{Phase2Lifetime: 100 * time.Second}, ResponderConfig{})
		p.start(t)
		first := waitEvent[ChildSAUp](t, p, p.ini.Events(), false).Child
		waitEvent[ChildSAUp](t, p, p.resp.Events(), false)
		start := time.Now()
		onRun(p.ini.r, func() bool {
			p.ini.r.sas.current().children[0].rekeying = true
			return true
		})
		onRun(p.resp.r, func() bool {
			p.resp.r.sas.current().children = nil
			return true
		})
		del := waitEvent[ChildSADeleted](t, p, p.ini.Events(), true)
		if del.InboundSPI != first.Inbound.SPI || del.ByPeer {
			t.Fatalf("initiator saw %+v, want SPI %08x forgotten by itself", del, first.Inbound.SPI)
		}
		if d := time.Since(start); d < 110*time.Second {
			t.Errorf("forgotten after %v, want 110 s (lifetime and a tenth)", d)
		}
		second := waitEvent[ChildSAUp](t, p, p.ini.Events(), true).Child
		if !second.Initiated || second.Inbound.SPI == first.Inbound.SPI {
			t.Errorf("new ESP SA %+v, want the client's renewal", second)
		}
	})
}

// TestSessionRekeyOnNewestIKESA: the server has started a new IKE SA and
// keeps the old one for a while (strongSwan's make-before-break
// re-authentication), answering no Quick Mode on the old one. Our ESP SA,
// still on the old IKE SA, is rekeyed at 90% of its 100 s through the new
// one.
func TestSessionRekeyOnNewestIKESA(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPair(t, Config{Phase2Lifetime: 100 * time.Second}, ResponderConfig{})
		p.resp.r.remote = clientAddr
		p.start(t)
		waitEvent[ChildSAUp](t, p, p.ini.Events(), false)
		waitEvent[ChildSAUp](t, p, p.resp.Events(), false)
		oldCky := onRun(p.ini.r, func() [8]byte { return p.ini.r.sas.current().ckyI })
		p.toResp.mu.Lock()
		p.toResp.dropFn = func(msg []byte) bool { // no Quick Mode on the old IKE SA gets through
			m, err := Parse(msg)
			return err == nil && m.Exchange == ExchangeQuickMode && m.ICookie == oldCky
		}
		p.toResp.mu.Unlock()
		onRun(p.resp.r, func() bool {
			if _, err := p.resp.r.startMainMode(); err != nil {
				t.Error(err)
			}
			return true
		})
		waitEvent[Phase1Up](t, p, p.ini.Events(), false)
		// The server's own Quick Mode on its new SA brings a second ESP SA. It replaces ours, which we
		// then leave to the server (peerReplaced); here ours is made due again, as one is when our
		// rekey falls due before the server's Quick Mode comes. At 90 s we rekey both, each through
		// the new IKE SA (one through the old would go unanswered).
		if c := waitEvent[ChildSAUp](t, p, p.ini.Events(), false).Child; c.Initiated {
			t.Fatalf("%+v: want the server's", c)
		}
		onRun(p.ini.r, func() bool {
			for _, sa := range p.ini.r.sas.sas {
				if sa.ckyI == oldCky {
					for _, c := range sa.children {
						c.rekeying = false
					}
				}
			}
			return true
		})
		for ours := 0; ours < 2; {
			if c := waitEvent[ChildSAUp](t, p, p.ini.Events(), true).Child; c.Initiated {
				ours++
			}
		}
		if del := waitEvent[ChildSADeleted](t, p, p.ini.Events(), true); del.ByPeer {
			t.Errorf("%+v: want a replaced SA retired by us", del)
		}
	})
}
