package datapath

import (
	"testing"
	"testing/synctest"
	"time"
)

// asksAt sends n packets from h.a, one every gap, and returns the packet
// counts (1-based, of this call) at which a asked for a rekey.
func (h *holdPair) asksAt(n int, gap time.Duration) []int {
	h.t.Helper()
	var at []int
	for i := 1; i <= n; i++ {
		h.mu.Lock()
		before := len(h.asks)
		h.mu.Unlock()
		if err := h.send(); err != nil {
			h.t.Fatal(err)
		}
		h.mu.Lock()
		if len(h.asks) > before {
			at = append(at, i)
		}
		h.mu.Unlock()
		time.Sleep(gap)
	}
	h.ca.take()
	return at
}

// TestByteLifetimeAsksForRekey: a pair limited to 100 datagrams per SA,
// used slowly (a rekey would carry little), asks for a rekey (BytesLow
// with its outbound SPI) once 90 % went out, then every 2 % more, up to
// the limit exactly; the same for what comes in, which is taken past the
// limit; a newly installed pair
// without a limit asks nothing.
func TestByteLifetimeAsksForRekey(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHoldPair(t)
		const limit = 100 * dgLen
		h.rekey(false, limit)
		at := h.asksAt(100, time.Second)
		if len(at) < 5 || len(at) > 6 || at[0] != 90 {
			t.Fatalf("asked at packets %v of 100, want from the 90th, every 2nd", at)
		}
		for _, spi := range h.asks {
			if spi != h.ab.SPI {
				t.Errorf("BytesLow(%08x), want the outbound SPI %08x", spi, h.ab.SPI)
			}
		}
		if got := h.a.out.Load().SealedBytes(); got != limit {
			t.Fatalf("SA sealed %d bytes, limit %d", got, limit)
		}

		// Inbound counts alone: a fresh limit, traffic from b only, 20 %
		// past the limit by our count: all of it is taken (the server
		// enforces its own limit, by a lower count).
		h.rekey(false, limit)
		h.asks = nil
		got := &ipSink{}
		h.a.SetIP(got)
		for range 120 {
			if err := h.b.SendIP(ipPacket(0), Headroom); err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Second)
			for _, dg := range h.cb.take() {
				h.a.Receive(dg)
			}
		}
		h.a.Flush()
		if len(h.asks) == 0 || h.asks[0] != h.ab.SPI {
			t.Fatalf("asks %x after the inbound SA carried its byte lifetime, want %08x", h.asks, h.ab.SPI)
		}
		if got.count() != 120 || h.a.RxDropped.Load() != 0 {
			t.Fatalf("a took %d of 120 packets past its inbound limit, dropped %d", got.count(), h.a.RxDropped.Load())
		}

		// A new pair without a limit: nothing asked however much flows.
		h.rekey(false, 0)
		if at := h.asksAt(200, time.Millisecond); len(at) != 0 {
			t.Errorf("asked at %v for a pair without a byte lifetime", at)
		}
	})
}

// TestByteLifetimeEarlyAtRate: the rekey is asked for early enough that,
// at the rate the SA is used and with the time the last rekey took, it
// completes before the limit. Limit 1,000 datagrams (checks every 20),
// one sent per millisecond, rekeys of 150 ms: the bytes sent while one
// runs are 150 datagrams, doubled: ask at 700. The same average rate in
// bursts of 50 asks at the same point (the rate is measured over windows
// of a rekey's length, not per burst). At one per 10 ms, 30: the 90 %
// mark comes first.
func TestByteLifetimeEarlyAtRate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHoldPair(t)
		const limit = 1000 * dgLen
		const rekey = 150 * time.Millisecond
		h.rekey(false, limit)
		// No rekey measured yet (1 s assumed), so no complete rate window
		// in the first second: the bytes so far count as sent in 1 s, x2.
		if at := h.asksAt(340, time.Millisecond); len(at) != 1 || at[0] != 340 {
			t.Fatalf("first SA asked at %v, want at 340 (3 x 340 > 1000)", at)
		}
		time.Sleep(rekey - time.Millisecond) // asksAt slept 1 ms after the ask
		h.rekey(false, limit)                // the rekey took 150 ms from the ask
		if d := h.a.rekeyTime(); d != rekey {
			t.Fatalf("rekey time %v, want %v", d, rekey)
		}
		at := h.asksAt(1000, time.Millisecond)
		if len(at) == 0 || at[0] != 700 {
			t.Fatalf("fast sender: asked at %v, want from the 700th packet", at)
		}
		// (asksAt went on past the ask: a rekey measured now would take
		// longer. Set it back to 150 ms, as if it had been.)
		h.rekey(false, limit)
		h.a.hold.rekeyTime.Store(int64(rekey))
		at = nil
		for burst := range 20 {
			for _, a := range h.asksAt(50, 0) {
				at = append(at, burst*50+a)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if len(at) == 0 || at[0] < 700 || at[0] > 720 {
			t.Fatalf("bursty sender: asked at %v, want from about the 700th packet", at)
		}
		h.rekey(false, limit)
		h.a.hold.rekeyTime.Store(int64(rekey))
		at = h.asksAt(1000, 10*time.Millisecond)
		if len(at) == 0 || at[0] != 900 {
			t.Fatalf("slow sender: asked at %v, want from the 900th packet (90 %%)", at)
		}
	})
}
