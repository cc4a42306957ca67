package ike

import (
	"context"
	"testing"
)

// TestSessionKilobyteLifetime: a server with an ESP SA lifetime of 4,096
// kilobytes (RFC 2407 §4.5 SA Life Type 2) answers our Quick Mode with it
// although we offered none, and offers it in the Quick Mode it starts
// itself; both ends report it on each pair (our datapath rekeys by it), and
// the pair the server started carries it in our answer too.
func TestSessionKilobyteLifetime(t *testing.T) {
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
}
