package netstack

import (
	"log/slog"
	"sync"
	"sync/atomic"

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

	q    chan *stack.PacketBuffer
	done chan struct{} // closed by shutdown
	once sync.Once
	wg   sync.WaitGroup // the out goroutine

	mu         sync.RWMutex
	dispatcher stack.NetworkDispatcher

	// rxOffload is whether the packet being delivered inbound right now
	// has had its checksums verified (see Capabilities).
	rxOffload atomic.Bool

	dropped atomic.Uint64 // best-effort packets dropped on a full queue
	blocked atomic.Uint64 // writes that had to wait for queue space
	outErrs atomic.Uint64 // out() returned an error
}

var _ stack.LinkEndpoint = (*linkEndpoint)(nil)

func newLinkEndpoint(mtu uint32, logger *slog.Logger) *linkEndpoint {
	e := &linkEndpoint{
		logger: logger,
		q:      make(chan *stack.PacketBuffer, outQueueLen),
		done:   make(chan struct{}),
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
// user's out function. emit takes over the references of the packets.
func (e *linkEndpoint) run(emit func([]*stack.PacketBuffer)) {
	defer e.wg.Done()
	batch := make([]*stack.PacketBuffer, 0, outBatchLen)
	for {
		select {
		case pkt := <-e.q:
			batch = append(batch[:0], pkt)
		drain:
			for len(batch) < outBatchLen {
				select {
				case pkt := <-e.q:
					batch = append(batch, pkt)
				default:
					break drain
				}
			}
			emit(batch)
			clear(batch)
		case <-e.done:
			for {
				select {
				case pkt := <-e.q:
					pkt.DecRef()
				default:
					return
				}
			}
		}
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

// WritePackets implements stack.LinkWriter. It takes a reference on every
// packet it queues; the caller keeps (and releases) its own.
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
		if mayBlock(pkt) {
			pkt.IncRef()
			select {
			case e.q <- pkt:
				n++
				continue
			default:
			}
			e.blocked.Add(1)
			select {
			case e.q <- pkt:
			case <-e.done:
				pkt.DecRef()
				if n == 0 {
					return 0, &tcpip.ErrClosedForSend{}
				}
				return n, nil
			}
		} else {
			pkt.IncRef()
			select {
			case e.q <- pkt:
			default:
				pkt.DecRef()
				c := e.dropped.Add(1)
				e.logger.Debug("netstack: out queue full, dropped best-effort packet",
					"proto", pkt.TransportProtocolNumber, "dropped_total", c)
			}
		}
		n++
	}
	return n, nil
}

// MTU implements stack.NetworkLinkEndpoint.
func (e *linkEndpoint) MTU() uint32 { return e.mtu.Load() }

// SetMTU implements stack.NetworkLinkEndpoint.
func (e *linkEndpoint) SetMTU(mtu uint32) { e.mtu.Store(mtu) }

// MaxHeaderLength implements stack.NetworkLinkEndpoint. The lower layers'
// headroom is provided by the out goroutine's copy into a pooled buffer, so
// gVisor need not reserve any.
func (e *linkEndpoint) MaxHeaderLength() uint16 { return 0 }

// LinkAddress implements stack.NetworkLinkEndpoint: PPP has no link address.
func (e *linkEndpoint) LinkAddress() tcpip.LinkAddress { return "" }

// SetLinkAddress implements stack.NetworkLinkEndpoint (no-op).
func (e *linkEndpoint) SetLinkAddress(tcpip.LinkAddress) {}

// Capabilities implements stack.NetworkLinkEndpoint.
//
// No TX checksum offload: packets leave through a real network (inside
// ESP) and the far end checks them, so gVisor computes them. No GSO: one
// MTU per packet.
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
