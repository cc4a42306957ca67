package ike

import (
	"context"
	"testing"
	"testing/synctest"
	"time"
)

// TestSessionKilobyteLifetime: a server with an ESP SA lifetime of 4,096
// kilobytes (RFC 2407 §4.5 SA Life Type 2) answers our Quick Mode with it
// although we offered none, and offers it in the Quick Mode it starts
// itself; both ends report it on each pair (our datapath rekeys by it), and
// the pair the server started carries it in our answer too.
func TestSessionKilobyteLifetime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPair(t, Config{}, ResponderConfig{Phase2LifeKilobytes: 4096})
		p.start(t)
		ic := waitEvent[ChildSAUp](t, p, p.ini.Events(), false).Child
		rc := waitEvent[ChildSAUp](t, p, p.resp.Events(), false).Child
		if ic.LifeKilobytes != 4096 || rc.LifeKilobytes != 4096 {
			t.Fatalf("our Quick Mode: LifeKilobytes %d (client) %d (server), want 4096", ic.LifeKilobytes, rc.LifeKilobytes)
		}
		errc := make(chan error, 1)
		go func() { errc <- p.resp.StartQuickMode(context.Background()) }()
		ic = waitEvent[ChildSAUp](t, p, p.ini.Events(), false).Child
		rc = waitEvent[ChildSAUp](t, p, p.resp.Events(), false).Child
		if err := <-errc; err != nil {
			t.Fatalf("StartQuickMode: %v", err)
		}
		if ic.LifeKilobytes != 4096 || rc.LifeKilobytes != 4096 || ic.Initiated {
			t.Fatalf("server's Quick Mode: LifeKilobytes %d (client) %d (server), Initiated %v; want 4096, 4096, false",
				ic.LifeKilobytes, rc.LifeKilobytes, ic.Initiated)
		}
		// No kilobytes on either side: none reported.
		q := newPair(t, Config{}, ResponderConfig{})
		q.start(t)
		if c := waitEvent[ChildSAUp](t, q, q.ini.Events(), false).Child; c.LifeKilobytes != 0 {
			t.Errorf("LifeKilobytes %d without a byte lifetime, want 0", c.LifeKilobytes)
		}
	})
}

// TestSessionServerStartedIKESALeftToServer: an ISAKMP SA the server
// started (its re-authentication) is not rekeyed by us at 90% of its
// lifetime, since deleting it after our rekey made charon delete its IPsec
// SAs; only if the server lets it run out do we make a new one, 10% after.
func TestSessionServerStartedIKESALeftToServer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPair(t, Config{Phase1Lifetime: 100 * time.Second}, ResponderConfig{})
		p.resp.r.remote = clientAddr // the server's NAT-D of us
		p.start(t)
		waitEvent[ChildSAUp](t, p, p.ini.Events(), false)
		waitEvent[ChildSAUp](t, p, p.resp.Events(), false)
		old := serverStartsMainMode(t, p)
		waitEvent[Phase1Up](t, p, p.ini.Events(), false)
		waitEvent[ChildSAUp](t, p, p.ini.Events(), false)
		waitEvent[ChildSAUp](t, p, p.resp.Events(), false)
		onRun(p.resp.r, func() bool {
			old.sendDeleteISAKMP()
			p.resp.r.sas.remove(old)
			return true
		})
		waitTable(t, p.ini.r, 1, 2)
		start := time.Now()
		waitEvent[Phase1Up](t, p, p.ini.Events(), true) // our own new IKE SA
		if d := time.Since(start); d < 100*time.Second || d > 115*time.Second {
			t.Errorf("we replaced the server's IKE SA after %v, want between its 100 s lifetime and 110 %% of it", d)
		}
	})
}
