package tunnel_test

import (
	"context"
	"testing"
	"time"

	"github.com/l2tpproxy/l2tpproxy/tunnel"
	"github.com/l2tpproxy/l2tpproxy/tunnel/datapath"
	"github.com/l2tpproxy/l2tpproxy/tunnel/memnet"
	"github.com/l2tpproxy/l2tpproxy/tunnel/testserver"
)

// BenchmarkConnectRTT: Dial against the test server over memnet with a
// one-way delay of 50 ms each way (100 ms round trip), issue 9's goal 5:
// connect in at most 12 round trips + 50 ms. Reports the mean and the
// fastest connect time, (mean - 50 ms) / RTT as rtts, and logs each run's
// layers (a retransmission shows as a layer that took 1 s or 3 s more).
func BenchmarkConnectRTT(b *testing.B) {
	const oneWay = 50 * time.Millisecond
	var total time.Duration
	best := time.Duration(1<<63 - 1)
	for b.Loop() {
		p := startMemPeers(b, 7, testserver.Config{})
		imp := memnet.Impairment{Delay: oneWay}
		p.impairServer(imp)
		p.client.SetImpairment(imp)
		start := time.Now()
		c, err := tunnel.Dial(context.Background(), p.cfg)
		if err != nil {
			b.Fatal(err)
		}
		took := time.Since(start)
		total += took
		best = min(best, took)
		b.Logf("connect %v: %+v", took.Round(time.Millisecond), c.Info().Times)
		c.Close()
	}
	per := total / time.Duration(b.N)
	b.ReportMetric(float64(per.Milliseconds()), "connect-ms")
	b.ReportMetric(float64(best.Milliseconds()), "fastest-ms")
	b.ReportMetric(float64(per-oneWay)/float64(2*oneWay), "rtts")
}

// TestServerOpensESPBehindQM3: the test server prepares its inbound SA
// before QM2 leaves, so the client's first SCCRQ, sent right behind QM3,
// is not dropped for want of an SA while the server's IKE goroutine is
// still processing QM3 (which cost every connect a 1 s L2TP resend).
func TestServerOpensESPBehindQM3(t *testing.T) {
	p := startMemPeers(t, 7, testserver.Config{})
	imp := memnet.Impairment{Delay: 50 * time.Millisecond}
	p.impairServer(imp)
	p.client.SetImpairment(imp)
	c, err := tunnel.Dial(context.Background(), p.cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if d := p.srv.DataStats().Drops[datapath.DropNoSA]; d != 0 {
		t.Errorf("the server dropped %d ESP datagrams for want of an SA (times %+v)", d, c.Info().Times)
	}
}

// TestFirstSCCRQResentSoonAtLateInstall: against a server that installs
// its inbound SA only once QM3 is processed (Faults.LateInbound, as
// kernel-based servers do), the first SCCRQ right behind QM3 is dropped
// there; the client sends a new one after twice the Quick Mode's round
// trip, not after L2TP's 1 s, so L2TP takes well under a second. Connects
// until one shows the drop (the race is the server's; it loses it nearly
// always), at most 4.
func TestFirstSCCRQResentSoonAtLateInstall(t *testing.T) {
	const oneWay = 50 * time.Millisecond
	for i := range 4 {
		p := startMemPeers(t, uint64(11+i), testserver.Config{Faults: testserver.Faults{LateInbound: true}})
		imp := memnet.Impairment{Delay: oneWay}
		p.impairServer(imp)
		p.client.SetImpairment(imp)
		c, err := tunnel.Dial(context.Background(), p.cfg)
		if err != nil {
			t.Fatal(err)
		}
		times := c.Info().Times
		c.Close()
		drops := p.srv.DataStats().Drops[datapath.DropNoSA]
		t.Logf("connect %d: %d no-SA drops at the server, times %+v", i, drops, times)
		if times.L2TP > 900*time.Millisecond {
			t.Fatalf("L2TP took %v with %d ESP datagrams dropped before the server's install, want < 0.9 s (a resend after 2 round trips)", times.L2TP, drops)
		}
		if drops > 0 {
			return
		}
	}
	t.Fatal("the server never dropped the first SCCRQ: the test did not exercise the early resend")
}
