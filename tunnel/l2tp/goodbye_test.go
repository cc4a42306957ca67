package l2tp

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/l2tpproxy/l2tpproxy/tunnel/clock"
)

// TestNoGoodbyeToUnreachablePeer: once the tunnel is up the peer vanishes
// (nothing the LAC sends arrives). Cancelled with ErrPeerUnreachable, Run
// returns at once and sends nothing; cancelled plainly, it sends CDN and
// StopCCN and waits out closeWait for their acknowledgement (the contrast
// shows the test can fail).
func TestNoGoodbyeToUnreachablePeer(t *testing.T) {
	for _, c := range []struct {
		name  string
		cause error
		want  time.Duration // how long Run takes after the cancellation
		sends int           // messages the LAC writes after the cancellation
	}{
		{"unreachable", ErrPeerUnreachable, 0, 0},
		{"plain", context.Canceled, closeWait, 2}, // CDN, StopCCN (retransmitted within closeWait: >= 2)
	} {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				up, down := &link{}, &link{}
				lacCfg := Config{HostName: "lac", VendorName: "lac-vendor", Clock: clock.Real}
				lnsCfg := Config{HostName: "lns", VendorName: "lns-vendor", Clock: clock.Real}
				lac, lns := NewLAC(lacCfg, up), NewLNS(lnsCfg, down)
				up.to, down.to = lns, lac
				lacCtx, lacCancel := context.WithCancelCause(context.Background())
				lnsCtx, lnsCancel := context.WithCancel(context.Background())
				lacErr, lnsErr := make(chan error, 1), make(chan error, 1)
				var done sync.WaitGroup // both Runs end before the bubble, even if the test fails early
				defer done.Wait()
				defer lnsCancel()
				defer lacCancel(nil)
				done.Go(func() { lnsErr <- lns.Run(lnsCtx) })
				done.Go(func() { lacErr <- lac.Run(lacCtx) })
				waitSessionUp(t, lac.Events())
				waitSessionUp(t, lns.Events())
				synctest.Wait()

				up.setFilter(func(int, *ControlMessage) linkAction { return drop }) // the peer is gone
				before := len(up.packets())
				start := time.Now()
				lacCancel(c.cause)
				if err := <-lacErr; err != nil {
					t.Errorf("Run = %v, want nil", err)
				}
				took := time.Since(start)
				sent := len(up.packets()) - before
				if c.sends == 0 && (took != 0 || sent != 0) {
					t.Errorf("Run took %v and sent %d messages after the cancellation, want 0 and 0", took, sent)
				}
				if c.sends != 0 && (took < c.want || sent < c.sends) {
					t.Errorf("Run took %v and sent %d messages, want %v and >= %d", took, sent, c.want, c.sends)
				}
				lnsCancel()
				<-lnsErr
			})
		})
	}
}

// TestSCCRPToEarlierSCCRQ: the server's first SCCRP is lost and it does not
// answer our next SCCRQ (xl2tpd takes it for a duplicate if the tunnel ID
// repeats; ours does not, but the test LNS answers only the first one it
// saw), then its own retransmitted SCCRP for our first tunnel ID arrives:
// the LAC takes it, and the tunnel and session come up within the first
// retransmission interval.
func TestSCCRPToEarlierSCCRQ(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		up, down := &link{}, &link{}
		lac := NewLAC(Config{HostName: "lac", Clock: clock.Real}, up)
		lns := NewLNS(Config{HostName: "lns", Clock: clock.Real}, down)
		up.to, down.to = lns, lac
		down.setFilter(func(n int, m *ControlMessage) linkAction {
			if n == 0 && m.Type == MsgSCCRP {
				return drop
			}
			return pass
		})
		ctx, cancel := context.WithCancel(context.Background())
		lacErr, lnsErr := make(chan error, 1), make(chan error, 1)
		var done sync.WaitGroup // both Runs end before the bubble, even if the test fails early
		defer done.Wait()
		defer cancel()
		done.Go(func() { lnsErr <- lns.Run(ctx) })
		done.Go(func() { lacErr <- lac.Run(ctx) })
		start := time.Now()
		s := waitSessionUp(t, lac.Events())
		took := time.Since(start)
		var tids []uint16
		for _, p := range up.packets() {
			if p.m.Type == MsgSCCRQ {
				tid, _ := p.m.Uint16(AVPAssignedTunnelID)
				tids = append(tids, tid)
			}
		}
		if len(tids) != 2 || tids[0] == tids[1] || s.LocalTunnelID != tids[0] {
			t.Errorf("SCCRQ tunnel IDs %v, session on %d: want two different ones, the session on the first", tids, s.LocalTunnelID)
		}
		if took > 2*time.Second {
			t.Errorf("session up after %v, want within ~1 s (the LNS's SCCRP retransmission)", took)
		}
		cancel()
		<-lacErr
		<-lnsErr
	})
}
