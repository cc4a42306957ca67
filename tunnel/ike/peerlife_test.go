package ike

import (
	"testing"
	"testing/synctest"
	"time"
)

// serverQuickMode makes the server start a Quick Mode of its own with a
// lifetime of life, offered as strongSwan does (its configured life_time),
// for a new SA beside ours: no Delete of ours follows (charon keeps a
// rekeyed IKEv1 SA until its own end).
func serverQuickMode(t *testing.T, p *pair, life time.Duration) {
	t.Helper()
	onRun(p.resp.r, func() bool {
		p.resp.r.p2Life = life
		if err := p.resp.r.sas.current().startQM(0); err != nil {
			t.Error(err)
		}
		return true
	})
}

// waitForgotten lets the bubble's time run until the client forgets spi
// by itself and returns how long after start that was; it fails if the
// client still holds it limit after start, or if the peer deleted it.
func waitForgotten(t *testing.T, p *pair, spi uint32, start time.Time, limit time.Duration) time.Duration {
	t.Helper()
	timeout := time.NewTimer(time.Until(start.Add(limit)))
	defer timeout.Stop()
	for {
		select {
		case ev := <-p.ini.Events():
			if del, ok := ev.(ChildSADeleted); ok && del.InboundSPI == spi {
				if del.ByPeer {
					t.Fatalf("%+v: want forgotten by the client, no Delete came", del)
				}
				return time.Since(start)
			}
		case err := <-p.iErr:
			t.Fatalf("initiator ended: %v", err)
		case <-timeout.C:
			t.Fatalf("the client still holds IPsec SA %08x %v after it was set up, want forgotten by %v", spi, time.Since(start), limit)
		}
	}
}

// TestSessionServerReplacesOurSA: our first IPsec SA is negotiated with
// the 1 h we propose and the server answers with it, but (as strongSwan
// does) keeps its own 30 s without saying so; 5 s later it starts a Quick
// Mode of its own, offering those 30 s; at its end it drops our SA without
// a Delete. The client forgets ours 30 s + a tenth after it was set up
// (the server's lifetime from the SA's own start), not after an hour,
// while the server's SA goes on carrying the traffic.
func TestSessionServerReplacesOurSA(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPair(t, Config{}, ResponderConfig{})
		p.start(t)
		first := waitEvent[ChildSAUp](t, p, p.ini.Events(), false).Child
		waitEvent[ChildSAUp](t, p, p.resp.Events(), false)
		start := time.Now()
		if !first.Initiated || first.Lifetime != time.Hour {
			t.Fatalf("first IPsec SA %+v, want ours with 1 h", first)
		}
		time.Sleep(5 * time.Second)
		serverQuickMode(t, p, 30*time.Second)
		if c := waitEvent[ChildSAUp](t, p, p.ini.Events(), false).Child; c.Initiated || c.Lifetime != 30*time.Second {
			t.Fatalf("second IPsec SA %+v, want the server's with 30 s", c)
		}
		waitTable(t, p.ini.r, 1, 2)
		if d := waitForgotten(t, p, first.Inbound.SPI, start, 40*time.Second); d < 33*time.Second {
			t.Errorf("forgotten %v after it was set up, want 33 s (the server's 30 s and a tenth)", d)
		}
		if _, n := tableShape(p.ini.r); n == 0 {
			t.Error("the client holds no IPsec SA, want the server's (or our rekey of it)")
		}
	})
}

// TestSessionServerReplacesSAOnOldIKESA: as above, but our SA sits on the
// old IKE SA after the server's re-authentication (a new Main Mode; the
// old IKE SA kept, as charon does with over_time) and the server's Quick
// Mode comes on the new IKE SA: our SA is capped all the same. When it
// goes, the old IKE SA has none left, but the new one holds the server's:
// no renewal, and nothing more on the old IKE SA.
func TestSessionServerReplacesSAOnOldIKESA(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPair(t, Config{}, ResponderConfig{})
		p.resp.r.remote = clientAddr
		p.start(t)
		first := waitEvent[ChildSAUp](t, p, p.ini.Events(), false).Child
		waitEvent[ChildSAUp](t, p, p.resp.Events(), false)
		start := time.Now()
		oldCky := onRun(p.ini.r, func() [8]byte { return p.ini.r.sas.current().ckyI })
		onOld := func() int { // Quick Mode messages from the client on the old IKE SA
			n := 0
			for _, raw := range mustMessages(p.toResp) {
				if m, err := Parse(raw); err == nil && m.Exchange == ExchangeQuickMode && m.ICookie == oldCky {
					n++
				}
			}
			return n
		}
		onRun(p.resp.r, func() bool {
			if _, err := p.resp.r.startMainMode(); err != nil {
				t.Error(err)
			}
			return true
		})
		waitEvent[Phase1Up](t, p, p.ini.Events(), false)
		// The server's test code starts a Quick Mode on its new SA, which has no ESP SA; then one
		// with 30 s.
		waitEvent[ChildSAUp](t, p, p.ini.Events(), false)
		serverQuickMode(t, p, 30*time.Second)
		waitEvent[ChildSAUp](t, p, p.ini.Events(), false)
		if sas, _ := tableShape(p.ini.r); sas != 2 {
			t.Fatalf("the client has %d IKE SAs, want the old and the new", sas)
		}
		old, qms := onOld(), quickModes(mustMessages(p.toResp))
		if d := waitForgotten(t, p, first.Inbound.SPI, start, 40*time.Second); d < 33*time.Second {
			t.Errorf("forgotten %v after it was set up, want 33 s", d)
		}
		time.Sleep(time.Until(start.Add(45 * time.Second)))
		synctest.Wait()
		// By 45 s the client has started one Quick Mode: its rekey of the server's 30 s SA, at 27 s
		// (the next is due at 54 s).
		if n := quickModes(mustMessages(p.toResp)) - qms; n != 1 {
			t.Errorf("the client started %d Quick Modes, want 1 (its rekey of the server's SA; no renewal)", n)
		}
		if n := onOld() - old; n != 0 {
			t.Errorf("%d Quick Mode messages from the client on the old IKE SA, want none", n)
		}
		if _, n := tableShape(p.ini.r); n == 0 {
			t.Error("the newest IKE SA holds no IPsec SA")
		}
	})
}

// TestSessionServerDeletesMovedSA: the server re-authenticates as
// strongSwan does, moving our IPsec SA to its new IKE SA at once, and then
// deletes it there (swanctl --terminate); on the client the SA still sits
// on the old IKE SA. The Delete reaches it all the same, and the client,
// left without an IPsec SA, renews through the new IKE SA.
func TestSessionServerDeletesMovedSA(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPair(t, Config{}, ResponderConfig{})
		p.resp.r.remote = clientAddr
		p.start(t)
		first := waitEvent[ChildSAUp](t, p, p.ini.Events(), false).Child
		waitEvent[ChildSAUp](t, p, p.resp.Events(), false)
		onRun(p.resp.r, func() bool {
			old := p.resp.r.sas.current()
			next, err := p.resp.r.startMainMode()
			if err != nil {
				t.Error(err)
				return false
			}
			next.children, old.children = old.children, nil
			return true
		})
		waitEvent[Phase1Up](t, p, p.ini.Events(), false)
		// The server's Main Mode ends when MM6 reaches it, after the client's
		// Phase1Up: a Delete before that has no IKE SA to go out on.
		waitEvent[Phase1Up](t, p, p.resp.Events(), false)
		if sas, _ := tableShape(p.ini.r); sas != 2 {
			t.Fatalf("the client has %d IKE SAs, want the old and the new", sas)
		}
		if err := p.resp.DeleteChildSAs(t.Context()); err != nil {
			t.Fatal(err)
		}
		if del := waitEvent[ChildSADeleted](t, p, p.ini.Events(), false); del.InboundSPI != first.Inbound.SPI || !del.ByPeer {
			t.Fatalf("initiator saw %+v, want SPI %08x deleted by the peer", del, first.Inbound.SPI)
		}
		second := waitEvent[ChildSAUp](t, p, p.ini.Events(), true).Child
		if !second.Initiated {
			t.Errorf("the new ESP SA %08x is not the client's", second.Inbound.SPI)
		}
	})
}
