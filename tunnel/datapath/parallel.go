// Parallel decryption of a received burst on a second core, delivered in
// order.
//
// The socket's reader Queues a burst's ESP datagrams and Flushes at the end
// of the burst. With a crypto worker running (RunCrypto) and a burst of at
// least minParallelBurst packets, the reader and the worker take packets
// one at a time from a shared counter and Unseal them (ICV check and
// decryption, in place in the reader's buffers); the reader meanwhile
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

	"github.com/l2tpproxy/l2tpproxy/tunnel/esp"
)

// minParallelBurst is the smallest burst worth handing half of to the
// worker: below it the hand-off (waking the worker) costs more than the
// decryption the reader saves (BenchmarkReceiveBurst).
const minParallelBurst = 8

// rxPacket is one ESP datagram of a queued burst.
type rxPacket struct {
	dg   []byte
	in   *esp.Inbound
	prev bool // in is a replaced SA
	u    esp.Unsealed
	done atomic.Bool // u is set (by whichever goroutine unsealed it)
}

// rxBurst is the reader's queued burst and the shared claim counter.
type rxBurst struct {
	pkts []rxPacket
	n    int          // queued packets (pkts[:n])
	next atomic.Int64 // the next packet index to claim
}

// cryptoWorker is one RunCrypto goroutine's mailbox. At most one job is
// outstanding: the reader sends one per burst and waits for done (or for
// stopped) before it reads the socket again.
type cryptoWorker struct {
	jobs    chan *rxBurst // capacity 1
	done    chan struct{} // capacity 1: one token per job taken
	stopped chan struct{} // closed when RunCrypto returns
}

// RunCrypto is the crypto worker: it unseals packets of the bursts the
// reader shares with it until ctx ends. At most one runs per path (a second
// call returns at once); without one, bursts are opened on the reader.
func (p *Path) RunCrypto(ctx context.Context) {
	w := &cryptoWorker{jobs: make(chan *rxBurst, 1), done: make(chan struct{}, 1), stopped: make(chan struct{})}
	if !p.worker.CompareAndSwap(nil, w) {
		return
	}
	defer func() {
		p.worker.CompareAndSwap(w, nil)
		close(w.stopped)
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case b := <-w.jobs:
			k := b.unsealClaims()
			p.RxParallel.Add(uint64(k))
			w.done <- struct{}{}
		}
	}
}

// unsealClaims unseals packets of b until none is left to claim, and
// returns how many it did.
func (b *rxBurst) unsealClaims() int {
	k := 0
	for {
		i := int(b.next.Add(1) - 1)
		if i >= b.n {
			return k
		}
		pk := &b.pkts[i]
		pk.in.Unseal(pk.dg, &pk.u)
		pk.done.Store(true)
		k++
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
	w := p.worker.Load()
	if w != nil && n >= minParallelBurst {
		b.next.Store(0)
		select {
		case w.jobs <- b:
			p.openShared(b, w)
			return
		default: // a job still queued: the worker is stopping
		}
	}
	for i := range b.pkts[:n] {
		pk := &b.pkts[i]
		payload, nh, err := pk.in.Open(pk.dg)
		p.deliver(pk.in, pk.prev, pk.dg, payload, nh, err)
	}
}

// spinWait bounds how often the reader yields while the worker unseals the
// packet it waits for, before it blocks until the worker has finished.
const spinWait = 64

// openShared is the reader's side of a burst shared with worker w: it
// unseals unclaimed packets and Commits and delivers each unsealed one in
// order, then waits until the worker is done with the burst.
func (p *Path) openShared(b *rxBurst, w *cryptoWorker) {
	workerDone := false
	for next, spins := 0, 0; next < b.n; {
		if i := int(b.next.Add(1) - 1); i < b.n {
			pk := &b.pkts[i]
			pk.in.Unseal(pk.dg, &pk.u)
			pk.done.Store(true)
		} else if !b.pkts[next].done.Load() {
			// Every packet is claimed and the next to deliver is the
			// worker's: yield a little, then block until it is through.
			if spins++; spins < spinWait || workerDone {
				runtime.Gosched()
				continue
			}
			p.waitWorker(w)
			workerDone = true
		}
		for ; next < b.n && b.pkts[next].done.Load(); next++ {
			pk := &b.pkts[next]
			payload, nh, err := pk.in.Commit(&pk.u)
			p.deliver(pk.in, pk.prev, pk.dg, payload, nh, err)
		}
	}
	if !workerDone {
		p.waitWorker(w)
	}
}

// waitWorker returns once w has finished the current job, or has stopped
// without taking it (then every packet was the reader's).
func (p *Path) waitWorker(w *cryptoWorker) {
	select {
	case <-w.done:
	case <-w.stopped:
	}
}
