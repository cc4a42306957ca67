package ppp

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/l2tpproxy/l2tpproxy/tunnel/clock"
)

// TestNoGoodbyeToUnreachablePeer: with the link up, the peer vanishes (what
// the client sends is lost). Cancelled with ErrPeerUnreachable, Run returns
// at once without a Terminate-Request; cancelled plainly, it sends one and
// waits out TerminateTimeout (the contrast shows the test can fail).
func TestNoGoodbyeToUnreachablePeer(t *testing.T) {
	for _, c := range []struct {
		name     string
		cause    error
		want     time.Duration
		termReqs int
	}{
		{"unreachable", ErrPeerUnreachable, 0, 0},
		{"plain", context.Canceled, DefaultTerminateTimeout, DefaultMaxTerminate},
	} {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				cc, sc := baseConfigs(clock.Real)
				w := &wire{}
				var cl *Client
				var s *Server
				cl = NewClient(cc, w.sender(0, func(b []byte) { s.HandleFrame(b) }))
				s = NewServer(sc, w.sender(1, func(b []byte) { cl.HandleFrame(b) }))
				cctx, cancelC := context.WithCancelCause(context.Background())
				sctx, cancelS := context.WithCancel(context.Background())
				cErr, sErr := make(chan error, 1), make(chan error, 1)
				var done sync.WaitGroup // every goroutine ends before the bubble, even if the test fails early
				defer done.Wait()
				defer cancelS()
				defer cancelC(nil)
				done.Go(func() { sErr <- s.Run(sctx) })
				done.Go(func() { cErr <- cl.Run(cctx) })
				up := false
				for !up {
					e, ok := <-cl.Events()
					if !ok {
						t.Fatalf("client ended before IPUp: %v", <-cErr)
					}
					_, up = e.(IPUp)
				}
				done.Go(func() {
					for range cl.Events() {
					}
				})
				synctest.Wait()
				w.mu.Lock()
				w.drop = func(dir int, _ []byte) bool { return dir == 0 } // the server is gone
				w.mu.Unlock()
				before := len(w.frames(0, protoLCP))
				start := time.Now()
				cancelC(c.cause)
				if err := <-cErr; err != nil {
					t.Errorf("Run = %v, want nil", err)
				}
				took := time.Since(start)
				reqs := 0
				for _, p := range w.frames(0, protoLCP)[before:] {
					if p.code == codeTermReq {
						reqs++
					}
				}
				if took != c.want || reqs != c.termReqs {
					t.Errorf("Run took %v and sent %d Terminate-Requests after the cancellation, want %v and %d", took, reqs, c.want, c.termReqs)
				}
				cancelS()
				<-sErr
			})
		})
	}
}
