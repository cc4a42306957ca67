package proxy

import (
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// TestMemReleaser: the heap is released once, memReleaseDelay after the
// open connections fall to a quarter of a peak of at least
// memReleaseMinPeak; a smaller crowd never triggers it, and a new crowd
// can trigger it again.
func TestMemReleaser(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var freed atomic.Int32 // the release runs on a timer's goroutine
		m := newMemReleaser(memReleaseDelay, func() { freed.Add(1) })
		crowd := func(n, closeTo int) {
			for range n {
				m.opened()
			}
			for range n - closeTo {
				m.closed()
			}
		}
		crowd(memReleaseMinPeak-1, 0)
		time.Sleep(2 * memReleaseDelay)
		if frees := freed.Load(); frees != 0 {
			t.Fatalf("%d releases after a crowd of %d, want 0", frees, memReleaseMinPeak-1)
		}
		crowd(1000, 300)
		time.Sleep(2 * memReleaseDelay)
		if frees := freed.Load(); frees != 0 {
			t.Fatalf("%d releases with 300 of 1000 still open, want 0", frees)
		}
		for range 60 {
			m.closed() // 240 open: a quarter of the peak
		}
		time.Sleep(memReleaseDelay - time.Millisecond)
		if frees := freed.Load(); frees != 0 {
			t.Fatalf("released before the delay")
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if frees := freed.Load(); frees != 1 {
			t.Fatalf("%d releases after the crowd left, want 1", frees)
		}
		for range 240 {
			m.closed()
		}
		time.Sleep(2 * memReleaseDelay)
		if frees := freed.Load(); frees != 1 {
			t.Fatalf("%d releases, want still 1 (the same crowd)", frees)
		}
		crowd(500, 0)
		time.Sleep(2 * memReleaseDelay)
		synctest.Wait()
		if frees := freed.Load(); frees != 2 {
			t.Fatalf("%d releases after a second crowd, want 2", frees)
		}
	})
}
