package proxy

import (
	"runtime/debug"
	"sync"
	"time"
)

// After a crowd of client connections closes, the Go runtime keeps the heap
// it grew for them and hands it back to the kernel only slowly (the
// background scavenger): measured with testdata/bench/conns, 1,000 SOCKS5
// connections took the client from 16 to 52 MB RSS and it stayed at 52 MB
// for the next 60 s. Issue 9 asks for under 40 MB within 60 s, so when the
// open connections fall to a quarter of a peak of at least
// memReleaseMinPeak, the heap is returned (debug.FreeOSMemory: one
// collection) memReleaseDelay later, once per crowd.
const (
	memReleaseMinPeak = 256
	memReleaseDelay   = 5 * time.Second
)

// memReleaser counts the proxies' open client connections (both proxies
// together) and schedules the release. The zero value is not usable; see
// newMemReleaser.
type memReleaser struct {
	free  func() // debug.FreeOSMemory, or a test's counter
	delay time.Duration

	mu        sync.Mutex
	open      int
	peak      int // the most open since the last release
	scheduled bool
}

func newMemReleaser(delay time.Duration, free func()) *memReleaser {
	return &memReleaser{free: free, delay: delay}
}

var connMemory = newMemReleaser(memReleaseDelay, debug.FreeOSMemory)

func (m *memReleaser) opened() {
	m.mu.Lock()
	m.open++
	m.peak = max(m.peak, m.open)
	m.mu.Unlock()
}

func (m *memReleaser) closed() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.open--
	if m.scheduled || m.peak < memReleaseMinPeak || m.open > m.peak/4 {
		return
	}
	m.scheduled = true
	time.AfterFunc(m.delay, func() {
		m.free()
		m.mu.Lock()
		m.peak = m.open
		m.scheduled = false
		m.mu.Unlock()
	})
}
