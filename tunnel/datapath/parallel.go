// Parallel decryption of a received burst on a second core, delivered in
// order.
//
// The socket's reader Queues a burst's ESP datagrams and Flushes at the end
// of the burst. With a crypto worker running (RunCrypto) and a burst of at
// least minParallelBurst packets on a non-AEAD SA, the reader takes packets
// one at a time from the front, the worker from the back, and each Unseals
// them (ICV check and decryption, in place in the reader's buffers); the
// reader meanwhile
// Commits each packet to the anti-replay window and delivers it in burst
// order, as soon as it and every packet before it are unsealed. No
// goroutine, channel message or allocation per packet: one hand-off per
// burst. wireguard-go's receive path has the same shape (parallel
// decryption, then in-order replay check and delivery by one goroutine per
// peer), with queues between them; here the burst is the unit, since the
// reader holds the buffers until it reads again.

package datapath

import (
	"context"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/l2tpproxy/l2tpproxy/tunnel/esp"
)

// minParallelBurst is the smallest burst worth sharing with the worker:
// below it the hand-off costs more than the decryption the reader saves.
const minParallelBurst = 16

// shareable reports whether a burst of n packets on SA in goes to the
// worker too. AES-GCM opens a 1,400-byte packet in under a microsecond
// (AES-CBC + HMAC-SHA1: 2.4 µs), less than the hand-off costs per packet
// on a VM whose idle core takes tens of microseconds to wake
// (BenchmarkReceiveBurst), so only non-AEAD suites are shared unless
// p.shareAEAD (tests).
func (p *Path) shareable(in *esp.Inbound, n int) bool {
	return n >= minParallelBurst && n <= 0xFFFF && (p.shareAEAD || !in.Algorithm().IsAEAD())
}

// rxPacket is one ESP datagram of a queued burst.
type rxPacket struct {
	dg   []byte
	in   *esp.Inbound
	prev bool // in is a replaced SA
	u    esp.Unsealed
	done atomic.Bool // u is set (by whichever goroutine unsealed it)
	// Two cache lines each: the reader and the worker write neighbouring
	// packets at the same time.
	_ [128 - 96]byte
}

// rxBurst is the reader's queued burst and the claim word it shares with
// the worker.
type rxBurst struct {
	pkts []rxPacket
	n    int // queued packets (pkts[:n])
	gen  uint32
	_    [64]byte // claim on a cache line of its own
	// claim is gen<<32 | lo<<16 | hi: the reader claims pkts[lo] from the
	// front, the worker pkts[hi-1] from the back, until they meet (so each
	// writes its own cache lines until then). A worker that wakes late,
	// with the job of a burst the reader has finished, finds another
	// generation there and touches nothing.
	claim atomic.Uint64
	_     [56]byte
}

// cryptoJob is one burst shared with the worker.
type cryptoJob struct {
	pkts  []rxPacket
	gen   uint32
	claim *atomic.Uint64
}

// cryptoWorker is one RunCrypto goroutine's mailbox.
type cryptoWorker struct {
	jobs chan cryptoJob // capacity 1; a job not taken yet is replaced
	// waiting is set while the reader blocks on wake for a packet the
	// worker is unsealing; the worker then sends a token after each one.
	waiting atomic.Bool
	wake    chan struct{} // capacity 1
}

// RunCrypto is the crypto worker: it unseals packets of the bursts the
// reader shares with it until ctx ends. At most one runs per path (a second
// call returns at once); without one, bursts are opened on the reader.
func (p *Path) RunCrypto(ctx context.Context) {
	w := &cryptoWorker{jobs: make(chan cryptoJob, 1), wake: make(chan struct{}, 1)}
	if !p.worker.CompareAndSwap(nil, w) {
		return
	}
	defer p.worker.CompareAndSwap(w, nil)
	for {
		var j cryptoJob
		if !w.poll(&j) {
			select {
			case <-ctx.Done():
				return
			case j = <-w.jobs:
			}
		}
		if k := w.unseal(j); k > 0 {
			p.RxParallel.Add(uint64(k))
		}
	}
}

// unseal unseals packets of j from the back until none is left to claim,
// and returns how many it did.
func (w *cryptoWorker) unseal(j cryptoJob) int {
	k := 0
	for i, ok := claim(j.claim, j.gen, true); ok; i, ok = claim(j.claim, j.gen, true) {
		pk := &j.pkts[i]
		pk.in.Unseal(pk.dg, &pk.u)
		pk.done.Store(true)
		if w.waiting.Load() {
			select {
			case w.wake <- struct{}{}:
			default:
			}
		}
		k++
	}
	return k
}

// workerPoll is how long the worker looks for the next job before it
// parks. Waking a parked goroutine on an idle core takes tens of
// microseconds on a VM (the reader's send only makes it runnable; an idle
// P's thread must be woken by futex and steal it), about as long as the
// reader needs for a CBC burst of 20 packets: when the reader is the
// bottleneck, bursts come back to back and the worker stays awake.
const workerPoll = 30 * time.Microsecond

// poll looks for a job without parking, for up to workerPoll.
func (w *cryptoWorker) poll(j *cryptoJob) bool {
	var start time.Time
	for i := 0; ; i++ {
		select {
		case *j = <-w.jobs:
			return true
		default:
		}
		if i == 0 {
			start = time.Now()
		} else if time.Since(start) > workerPoll {
			return false
		}
		runtime.Gosched()
	}
}

// claim takes the next unclaimed packet of burst generation gen, from the
// front or (back) from the back, if any is left.
func claim(c *atomic.Uint64, gen uint32, back bool) (int, bool) {
	for {
		v := c.Load()
		lo, hi := int(v>>16&0xFFFF), int(v&0xFFFF)
		if uint32(v>>32) != gen || lo >= hi {
			return 0, false
		}
		if back {
			if c.CompareAndSwap(v, v-1) {
				return hi - 1, true
			}
		} else if c.CompareAndSwap(v, v+1<<16) {
			return lo, true
		}
	}
}

// Queue takes one ESP datagram of a burst; Flush opens and delivers it.
// dg must stay unchanged until then (a Receiver's buffers do, until its
// next Read). Only the socket's reader may call it.
func (p *Path) Queue(dg []byte) {
	in, prev := p.inboundFor(dg)
	if in == nil {
		return
	}
	b := &p.rx
	if b.n == len(b.pkts) {
		b.pkts = append(b.pkts, make([]rxPacket, max(len(b.pkts), 64))...)
	}
	pk := &b.pkts[b.n]
	pk.dg, pk.in, pk.prev = dg, in, prev
	pk.done.Store(false)
	b.n++
}

// openQueued opens and delivers the queued burst, in order.
func (p *Path) openQueued() {
	b := &p.rx
	n := b.n
	if n == 0 {
		return
	}
	defer func() {
		clear(b.pkts[:n]) // keep no reference to the reader's buffers
		b.n = 0
	}()
	if w := p.worker.Load(); w != nil && p.shareable(b.pkts[0].in, n) {
		b.gen++
		b.claim.Store(uint64(b.gen)<<32 | uint64(n))
		select {
		case <-w.jobs: // an earlier burst's job the worker never took
		default:
		}
		select {
		case w.jobs <- cryptoJob{pkts: b.pkts[:n], gen: b.gen, claim: &b.claim}:
			if p.afterHandOff != nil {
				p.afterHandOff(b)
			}
			p.openShared(b, w)
			return
		default:
		}
	}
	for i := range b.pkts[:n] {
		pk := &b.pkts[i]
		payload, nh, err := pk.in.Open(pk.dg)
		p.deliver(pk.in, pk.prev, pk.dg, payload, nh, err)
	}
}

// spinWait bounds how often the reader yields while the worker unseals the
// packet it waits for, before it blocks until the worker wakes it.
const spinWait = 64

// openShared is the reader's side of a burst shared with worker w: it
// unseals unclaimed packets and Commits and delivers each unsealed one in
// order. It returns once every packet is delivered: the worker has then
// finished every packet it claimed and can claim no more.
func (p *Path) openShared(b *rxBurst, w *cryptoWorker) {
	for next, spins := 0, 0; next < b.n; {
		if i, ok := claim(&b.claim, b.gen, false); ok {
			pk := &b.pkts[i]
			pk.in.Unseal(pk.dg, &pk.u)
			pk.done.Store(true)
		} else if pk := &b.pkts[next]; !pk.done.Load() {
			// Every packet is claimed and the next to deliver is the
			// worker's: yield a little, then sleep until it is through.
			if spins++; spins < spinWait {
				runtime.Gosched()
				continue
			}
			w.waiting.Store(true)
			for !pk.done.Load() { // a token may be stale: check again
				<-w.wake
			}
			w.waiting.Store(false)
			spins = 0
		}
		for ; next < b.n && b.pkts[next].done.Load(); next++ {
			pk := &b.pkts[next]
			payload, nh, err := pk.in.Commit(&pk.u)
			p.deliver(pk.in, pk.prev, pk.dg, payload, nh, err)
		}
	}
}
