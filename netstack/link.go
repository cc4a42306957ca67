package netstack

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// outQueueLen bounds the number of outbound IP packets waiting for the
// tunnel. At a 1400-byte MTU this is ~350 KiB: enough to absorb a TCP burst
// while the out function encrypts, small enough to keep queueing delay (and
// therefore RTT inflation for every connection sharing the tunnel) low.
const outQueueLen = 256

// outBatchLen bounds how many queued packets the out goroutine hands over
// at once. Batches only ever take what is already queued (no waiting for
// more), so they add no latency; they let the tunnel seal a burst and send
// it with one system call.
const outBatchLen = 64

// linkEndpoint is the gVisor data-link endpoint between the stack and the PPP
// tunnel. Unlike gVisor's link/channel endpoint it does not drop data
// packets when the queue is full (a drop there costs a TCP retransmission
// timeout or a lost datagram for no reason): instead TCP data segments and
// UDP datagrams block their writer until the out goroutine makes room (back-pressure into gVisor, like tailscale's
// wgengine/netstack linkEndpoint).
//
// Packets written synchronously on the inbound path (ICMP echo replies and
// errors, TCP RSTs for unknown connections) do NOT block: they are emitted
// from inside InjectInbound, and blocking there could deadlock a caller whose
// out function feeds the same goroutine that calls InjectInbound. Those
// packets are best-effort by design, so they are counted and dropped when
// the queue is full.
type linkEndpoint struct {
	mtu    atomic.Uint32
	logger *slog.Logger
	gso    bool // offer TCP GSO to the stack (Config.TCPGSO)

	// Outbound packets are copied (GSO segments: cut, see gso.go) by the
	// writer into pooled buffers of bufSize bytes, each holding one IPv4
	// packet after headroom bytes with at least tailroom spare, and
	// queued; one queue entry is one packet of at most the MTU.
	pool               *sync.Pool // *[]byte of len bufSize
	bufSize            int
	headroom, tailroom int

	q    chan *[]byte
	done chan struct{} // closed by shutdown
	once sync.Once
	wg   sync.WaitGroup // the out goroutine

	mu         sync.RWMutex
	dispatcher stack.NetworkDispatcher

	// rxOffload is whether the packet being delivered inbound right now
	// has had its checksums verified (see Capabilities).
	rxOffload atomic.Bool

	// probe re-sends segments of silent TCP flows (stall.go); nil if off.
	probe *stallProber

	dropped atomic.Uint64 // best-effort packets dropped on a full queue
	blocked atomic.Uint64 // writes that had to wait for queue space
	outErrs atomic.Uint64 // out() returned an error
}

var (
	_ stack.LinkEndpoint = (*linkEndpoint)(nil)
	_ stack.GSOEndpoint  = (*linkEndpoint)(nil)
)

func newLinkEndpoint(mtu uint32, headroom, tailroom int, gso bool, pool *sync.Pool, logger *slog.Logger) *linkEndpoint {
	e := &linkEndpoint{
		gso:      gso,
		logger:   logger,
		pool:     pool,
		bufSize:  headroom + int(mtu) + tailroom,
		headroom: headroom,
		tailroom: tailroom,
		q:        make(chan *[]byte, outQueueLen),
		done:     make(chan struct{}),
	}
	e.mtu.Store(mtu)
	e.rxOffload.Store(true)
	return e
}

// shutdown wakes blocked writers and stops the out goroutine. Idempotent.
func (e *linkEndpoint) shutdown() {
	e.once.Do(func() { close(e.done) })
}

// run drains the queue, calling emit with up to outBatchLen packets at a
// time, in order, until shutdown. It is the single goroutine that calls the
// user's out function. emit takes over the buffers (see release).
func (e *linkEndpoint) run(emit func([]*[]byte)) {
	defer e.wg.Done()
	batch := make([]*[]byte, 0, outBatchLen)
	// The stall prober's timer: armed while it tracks flows, at most
	// probeFloor away while data was sent since it last looked.
	timer := time.NewTimer(time.Hour)
	timer.Stop() // nothing to receive after Stop (Go 1.23 timers)
	defer timer.Stop()
	var timerC <-chan time.Time
	var timerAt time.Time
	arm := func(d time.Duration) {
		timer.Reset(d)
		timerC, timerAt = timer.C, time.Now().Add(d)
	}
	for {
		select {
		case bp := <-e.q:
			batch = append(batch[:0], bp)
		drain:
			for len(batch) < outBatchLen {
				select {
				case bp := <-e.q:
					batch = append(batch, bp)
				default:
					break drain
				}
			}
			if e.probe != nil && e.probe.sent(batch) &&
				(timerC == nil || time.Until(timerAt) > probeFloor) {
				timer.Stop()
				arm(probeFloor)
			}
			emit(batch)
			clear(batch)
		case <-timerC:
			timerC = nil
			var next time.Duration
			batch, next = e.probe.expire(batch[:0])
			if len(batch) > 0 {
				emit(batch)
				clear(batch)
			}
			if next > 0 {
				arm(next)
			}
		case <-e.done:
			if e.probe != nil {
				e.probe.forgetAll()
			}
			for {
				select {
				case bp := <-e.q:
					e.release(bp)
				default:
					return
				}
			}
		}
	}
}

// getBuf returns a buffer for a packet of size bytes, with len
// headroom+size: a pooled one if it fits, else a one-off.
func (e *linkEndpoint) getBuf(size int) *[]byte {
	need := e.headroom + size
	if need+e.tailroom > e.bufSize {
		// gVisor fragments to the link MTU and GSO segments are cut to
		// it, so this should not happen; stay correct anyway.
		e.logger.Warn("netstack: outbound packet larger than MTU", "size", size, "mtu", e.mtu.Load())
		b := make([]byte, need, need+e.tailroom)
		return &b
	}
	bp := e.pool.Get().(*[]byte)
	*bp = (*bp)[:need]
	return bp
}

// release returns a buffer from getBuf to the pool (one-offs are dropped).
func (e *linkEndpoint) release(bp *[]byte) {
	if cap(*bp) == e.bufSize {
		e.pool.Put(bp)
	}
}

// mayBlock reports whether a writer of pkt may be made to wait for queue
// space. See the linkEndpoint comment for why RSTs and ICMP never wait.
func mayBlock(pkt *stack.PacketBuffer) bool {
	switch pkt.TransportProtocolNumber {
	case header.UDPProtocolNumber:
		return true
	case header.TCPProtocolNumber:
		th := pkt.TransportHeader().Slice()
		if len(th) < header.TCPMinimumSize {
			return false
		}
		return !header.TCP(th).Flags().Contains(header.TCPFlagRst)
	default:
		return false
	}
}

// enqueue queues bp, waiting for space if block. It reports false when the
// endpoint is shut down (bp is then released).
func (e *linkEndpoint) enqueue(bp *[]byte, block bool) bool {
	select {
	case e.q <- bp:
		return true
	default:
	}
	if !block {
		e.release(bp)
		c := e.dropped.Add(1)
		e.logger.Debug("netstack: out queue full, dropped best-effort packet", "dropped_total", c)
		return true
	}
	e.blocked.Add(1)
	select {
	case e.q <- bp:
		return true
	case <-e.done:
		e.release(bp)
		return false
	}
}

// WritePackets implements stack.LinkWriter. It copies every packet into a
// pooled buffer and queues it, cutting TCP GSO segments into MTU-sized
// packets on the way (see gso.go); the caller keeps its references.
func (e *linkEndpoint) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	n := 0
	for _, pkt := range pkts.AsSlice() {
		select {
		case <-e.done:
			if n == 0 {
				return 0, &tcpip.ErrClosedForSend{}
			}
			return n, nil
		default:
		}
		block := mayBlock(pkt)
		if pkt.GSOOptions.Type == stack.GSOTCPv4 {
			if !e.writeSegmented(pkt, block) {
				if n == 0 {
					return 0, &tcpip.ErrClosedForSend{}
				}
				return n, nil
			}
			n++
			continue
		}
		bp := e.getBuf(pkt.Size())
		off := e.headroom
		for _, v := range pkt.AsSlices() {
			off += copy((*bp)[off:], v)
		}
		if !e.enqueue(bp, block) {
			if n == 0 {
				return 0, &tcpip.ErrClosedForSend{}
			}
			return n, nil
		}
		n++
	}
	return n, nil
}

// writeSegmented cuts a TCP GSO packet into packets of at most the MTU and
// queues them. It reports false when the endpoint is shut down.
func (e *linkEndpoint) writeSegmented(pkt *stack.PacketBuffer, block bool) bool {
	var g tcp4Segmenter
	if err := g.init(pkt.AsSlices(), int(pkt.GSOOptions.MSS), int(e.mtu.Load())); err != nil {
		// Dropping it is what a NIC does with a bad TSO descriptor; TCP
		// retransmits.
		c := e.outErrs.Add(1)
		e.logger.Warn("netstack: dropped outbound packet", "err", err, "errors_total", c)
		return true
	}
	for {
		bp := e.getBuf(g.nextLen)
		if g.next((*bp)[e.headroom:]) == 0 {
			e.release(bp)
			return true
		}
		if !e.enqueue(bp, block) {
			return false
		}
	}
}

// GSOMaxSize implements stack.GSOEndpoint.
func (e *linkEndpoint) GSOMaxSize() uint32 { return gsoMaxSize }

// SupportedGSO implements stack.GSOEndpoint. "Host" GSO is gVisor's name
// for segmentation below the stack: this endpoint does it (gso.go), when
// Config.TCPGSO asks for it.
func (e *linkEndpoint) SupportedGSO() stack.SupportedGSO {
	if !e.gso {
		return stack.GSONotSupported
	}
	return stack.HostGSOSupported
}

// MTU implements stack.NetworkLinkEndpoint.
func (e *linkEndpoint) MTU() uint32 { return e.mtu.Load() }

// SetMTU implements stack.NetworkLinkEndpoint.
func (e *linkEndpoint) SetMTU(mtu uint32) { e.mtu.Store(mtu) }

// MaxHeaderLength implements stack.NetworkLinkEndpoint. The lower layers'
// headroom is provided by WritePackets' copy into a pooled buffer, so
// gVisor need not reserve any.
func (e *linkEndpoint) MaxHeaderLength() uint16 { return 0 }

// LinkAddress implements stack.NetworkLinkEndpoint: PPP has no link address.
func (e *linkEndpoint) LinkAddress() tcpip.LinkAddress { return "" }

// SetLinkAddress implements stack.NetworkLinkEndpoint (no-op).
func (e *linkEndpoint) SetLinkAddress(tcpip.LinkAddress) {}

// Capabilities implements stack.NetworkLinkEndpoint.
//
// No TX checksum offload: packets leave through a real network (inside
// ESP) and the far end checks them, so gVisor computes them — except for
// TCP GSO segments, whose checksums the endpoint computes per cut packet
// (gso.go).
//
// RX checksum offload is declared, like a NIC that verifies checksums in
// hardware: EnqueueInbound verifies the IPv4 header and TCP/UDP checksums
// in software before delivery (the ESP ICV only covers the tunnel leg, not
// the path from the sending host to the VPN server, so the end-to-end
// checksums still matter), and the stack's GRO must be able to hand up
// coalesced segments whose checksums no longer add up. The NIC asks for
// the capabilities on every inbound packet, so a packet that was not
// verified (fragments, other protocols) is delivered with rxOffload off
// and gVisor checks it itself. Only the inbound goroutine changes rxOffload.
func (e *linkEndpoint) Capabilities() stack.LinkEndpointCapabilities {
	if e.rxOffload.Load() {
		return stack.CapabilityRXChecksumOffload
	}
	return stack.CapabilityNone
}

// Attach implements stack.NetworkLinkEndpoint.
func (e *linkEndpoint) Attach(d stack.NetworkDispatcher) {
	e.mu.Lock()
	e.dispatcher = d
	e.mu.Unlock()
}

// IsAttached implements stack.NetworkLinkEndpoint.
func (e *linkEndpoint) IsAttached() bool {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.dispatcher != nil
}

func (e *linkEndpoint) getDispatcher() stack.NetworkDispatcher {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.dispatcher
}

// Wait implements stack.NetworkLinkEndpoint: it waits for the out goroutine,
// which only exits after shutdown.
func (e *linkEndpoint) Wait() { e.wg.Wait() }

// ARPHardwareType implements stack.NetworkLinkEndpoint.
func (e *linkEndpoint) ARPHardwareType() header.ARPHardwareType { return header.ARPHardwareNone }

// AddHeader implements stack.NetworkLinkEndpoint (PPP framing is added by the tunnel).
func (e *linkEndpoint) AddHeader(*stack.PacketBuffer) {}

// ParseHeader implements stack.NetworkLinkEndpoint.
func (e *linkEndpoint) ParseHeader(*stack.PacketBuffer) bool { return true }

// Close implements stack.NetworkLinkEndpoint.
func (e *linkEndpoint) Close() { e.shutdown() }

// SetOnCloseAction implements stack.NetworkLinkEndpoint.
func (e *linkEndpoint) SetOnCloseAction(func()) {}
