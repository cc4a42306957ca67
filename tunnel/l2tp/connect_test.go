package l2tp

import (
	"testing"
	"testing/synctest"
	"time"
)

// TestICRQFollowsSCCCN: the LAC sends ICRQ right behind SCCCN, without
// waiting for the ZLB that acknowledges it (one round trip of the connect).
func TestICRQFollowsSCCCN(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newScripted(t)
		s.sccrp(nil)
		scccn := s.expect(MsgSCCCN)
		icrq := s.expect(MsgICRQ) // no ZLB from us in between
		if icrq.Ns != scccn.Ns+1 || icrq.Nr != 1 {
			t.Errorf("ICRQ Ns %d Nr %d, want %d and 1", icrq.Ns, icrq.Nr, scccn.Ns+1)
		}
	})
}

// TestSessionUpWhenICCNSent: the LAC reports SessionUp as soon as ICCN is
// sent, not when its acknowledgement comes (one round trip of the
// connect); ICCN is still retransmitted until acknowledged.
func TestSessionUpWhenICCNSent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newScripted(t)
		s.toICRQ()
		s.send(newMessage(MsgICRP, s.lacTID, s.lacSID).u16(AVPAssignedSessionID, true, 55))
		iccn := s.expect(MsgICCN)
		sess := sessionUp(t, s.lac.Events()) // ICCN not acknowledged
		if sess.PeerSessionID != 55 || sess.PeerTunnelID != 77 {
			t.Errorf("session %+v", sess)
		}
		// Reliable delivery still applies: ICCN comes again after RetryInitial.
		s.l.waitUntil(t, 3*time.Second, func() bool { return s.l.count(MsgICCN) == 2 })
		sp := s.l.packets()
		if last := sp[len(sp)-1].m; last.Type != MsgICCN || last.Ns != iccn.Ns {
			t.Errorf("retransmitted %s Ns %d, want ICCN Ns %d", last.Type, last.Ns, iccn.Ns)
		}
	})
}

// TestFirstSCCRQTimeout: with FirstSCCRQTimeout the first SCCRQ is
// replaced after that long, not after RetryInitial; the schedule then
// goes on from RetryInitial, and the early one is not a retry.
func TestFirstSCCRQTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPair(t, func(c *Config) { c.FirstSCCRQTimeout = 200 * time.Millisecond; c.MaxRetries = 1 }, nil)
		p.up.setFilter(func(n int, m *ControlMessage) linkAction {
			if m.Type == MsgSCCRQ && n < 2 {
				return drop
			}
			return pass
		})
		p.start(t)
		p.up.waitUntil(t, 5*time.Second, func() bool { return p.up.count(MsgSCCRQ) == 3 })
		sp := p.up.packets()
		if d := sp[1].at.Sub(sp[0].at); d != 200*time.Millisecond {
			t.Errorf("second SCCRQ after %v, want 200ms (FirstSCCRQTimeout)", d)
		}
		if d := sp[2].at.Sub(sp[1].at); d != time.Second {
			t.Errorf("third SCCRQ after %v, want 1s (RetryInitial)", d)
		}
		// MaxRetries 1: the third SCCRQ was the one retry, and it is answered.
		sessionUp(t, p.lac.Events())
		sessionUp(t, p.lns.Events())
	})
}

// TestAckReachesStrictPeer: our HELLO is lost, and the server's HELLO
// acknowledges only what came before it. xl2tpd would ignore a ZLB whose
// Ns is past the lost HELLO's, so the LAC sends, at once, the ZLB and its
// HELLO again with the new Nr: whichever the server expects carries the
// acknowledgement.
func TestAckReachesStrictPeer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newScripted(t)
		s.toICRQ()
		s.send(newMessage(MsgICRP, s.lacTID, s.lacSID).u16(AVPAssignedSessionID, true, 55))
		s.expect(MsgICCN)
		sessionUp(t, s.lac.Events())
		s.zlb()                                        // ICCN acknowledged
		time.Sleep(defaultHelloInterval + time.Second) // silence: the LAC probes
		hello := s.expect(MsgHELLO)                    // and we play that it was lost
		synctest.Wait()
		before := len(s.l.packets())

		pkt, err := newMessage(MsgHELLO, s.lacTID, 0).bytes()
		if err != nil {
			t.Fatal(err)
		}
		putNsNr(pkt, s.ns, hello.Ns) // acknowledges what came before the HELLO only
		s.ns++
		s.lac.HandleControl(pkt)
		synctest.Wait()
		sent := s.l.packets()[before:]
		var zlb, again bool
		for _, sp := range sent {
			switch {
			case sp.m.Type == MsgZLB && sp.m.Ns == hello.Ns+1 && sp.m.Nr == s.ns:
				zlb = true
			case sp.m.Type == MsgHELLO && sp.m.Ns == hello.Ns && sp.m.Nr == s.ns:
				again = true
			}
		}
		if !zlb || !again {
			t.Fatalf("without time passing the LAC sent %v (ZLB %v, HELLO again %v), want a ZLB with Ns %d and HELLO Ns %d, both with Nr %d",
				s.l.types()[before:], zlb, again, hello.Ns+1, hello.Ns, s.ns)
		}
	})
}
