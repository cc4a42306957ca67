// Package netstack is the user-space TCP/IP stack (gVisor) that runs on top of
// the PPP session: the proxies dial through it, and every IP packet it emits
// is handed to the tunnel through a single out function.
//
// IPv4 is configured from IPCP; IPv6 stays off until EnableIPv6 (IPv6CP
// opened; see ipv6.go). ICMP echo requests are answered by gVisor.
package netstack

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/sniffer"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/stack/gro"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
)

// Sentinel errors. Errors returned by this package wrap one of these (or a
// context error) so callers can classify them with errors.Is.
var (
	ErrBadConfig          = errors.New("netstack: invalid configuration")
	ErrClosed             = errors.New("netstack: stack closed")
	ErrNotIPv4            = errors.New("netstack: not an IPv4 packet")
	ErrUnsupportedNetwork = errors.New("netstack: unsupported network")
	ErrBadAddress         = errors.New("netstack: bad address")
	ErrDial               = errors.New("netstack: dial failed")
	ErrListen             = errors.New("netstack: listen failed")
	ErrNoDNS              = errors.New("netstack: no DNS server configured (IPCP gave none)")
	ErrDNSNotFound        = errors.New("netstack: host not found")
	ErrDNSFailed          = errors.New("netstack: DNS lookup failed")
)

// nicID is the only NIC: the PPP link.
const nicID tcpip.NICID = 1

// Config configures a Stack.
type Config struct {
	LocalAddr netip.Addr   // our IPv4 address from IPCP
	DNS       []netip.Addr // DNS servers from IPCP (queried THROUGH the tunnel)
	MTU       int          // IP MTU (computed by the lead from PPP MRU and ESP/L2TP overhead)
	Headroom  int          // bytes reserved before each outbound IP packet for lower-layer headers
	Tailroom  int          // spare capacity after it (ESP padding + ICV)
	Logger    *slog.Logger

	// OutBatch, if set, is used instead of New's out function whenever
	// more than one packet is waiting: each bufs[i][headroom:] is one
	// outbound IPv4 packet, with the same rules as out's buf (headroom and
	// tailroom free, called from one goroutine in order, not retained).
	OutBatch func(bufs [][]byte, headroom int) error

	// TCPGSO lets gVisor's TCP senders hand the link segments of up to
	// 64 KiB, which the link cuts into MTU-sized packets (gso.go). It
	// saves about a third of the CPU of an upload, but costs loss
	// recovery: gVisor's RACK (rack.go, this version) marks and
	// retransmits whole write-list segments, so with GSO one lost
	// packet makes a 64 KiB segment "lost" and the packets of it that
	// did arrive are sent again while the real hole waits for an RTO.
	// Measured through 5 % loss each way (BenchmarkLossy, 8 MiB): ~40
	// RTOs per transfer and 5-9 MB/s with GSO, 9-20 RTOs and 8-19 MB/s
	// without. Off by default: real paths lose packets. IPv4 only:
	// EnableIPv6 refuses a stack with TCPGSO.
	TCPGSO bool

	// NoStallProbes turns off the link's stall probes (stall.go): a
	// copy of a segment re-sent when a TCP connection with data in
	// flight falls silent, so that gVisor's sender recovers from a lost
	// retransmission or tail in a few milliseconds instead of its 200 ms
	// RTO. On by default; off only to measure what they do.
	NoStallProbes bool

	// Capture, if set, receives every IP packet the stack sends and
	// receives, as a pcap stream (LINKTYPE_RAW: the file header first, then
	// one Write per packet, from several goroutines: it must serialise
	// them and should never fail). gVisor's sniffer writes it. Inbound TCP
	// segments appear as the stack gets them, after GRO coalescing.
	Capture io.Writer
}

// MTU bounds. 576 is the IPv4 minimum every host must accept (RFC 791,
// RFC 1122 §3.3.3); 65535 is the IPv4 total-length limit.
const (
	minMTU = 576
	maxMTU = 65535
)

// Stack is a gVisor TCP/IP stack with one NIC whose link layer is the tunnel.
type Stack struct {
	cfg    Config
	logger *slog.Logger
	stack  *stack.Stack
	link   *linkEndpoint
	out    func(buf []byte, headroom int) error
	pool   sync.Pool // *[]byte of cap Headroom+MTU+Tailroom
	// Scratch of the out goroutine (emit): the batch being handed to out.
	outBufs [][]byte
	dns     dnsCache
	// gro coalesces inbound TCP segments; used only by the inbound caller
	// (EnqueueInbound, FlushInbound).
	gro gro.GRO
	// groHeld counts the packets given to gro since the last flush.
	groHeld int

	closeOnce sync.Once

	// IPv6 (ipv6.go).
	v6mu  sync.Mutex
	v6on  atomic.Bool
	v6iid [8]byte
}

// New creates a Stack with cfg.LocalAddr on its only NIC and a default route
// (0.0.0.0/0) through it.
//
// out is called from ONE goroutine, in order. buf[headroom:] is one outbound
// IPv4 packet; buf[:headroom] is free for the caller's headers;
// cap(buf)-len(buf) >= Tailroom. out must not retain buf (pooled buffers).
// If out blocks, the stack is back-pressured: the queue in front of it is
// bounded and gVisor's TCP/UDP writers wait rather than drop.
func New(cfg Config, out func(buf []byte, headroom int) error) (*Stack, error) {
	if out == nil {
		return nil, fmt.Errorf("%w: nil out function", ErrBadConfig)
	}
	if !cfg.LocalAddr.Is4() {
		return nil, fmt.Errorf("%w: local address %v is not IPv4", ErrBadConfig, cfg.LocalAddr)
	}
	if cfg.MTU < minMTU || cfg.MTU > maxMTU {
		return nil, fmt.Errorf("%w: MTU %d outside [%d, %d]", ErrBadConfig, cfg.MTU, minMTU, maxMTU)
	}
	if cfg.Headroom < 0 || cfg.Tailroom < 0 || cfg.Headroom > 4096 || cfg.Tailroom > 4096 {
		return nil, fmt.Errorf("%w: headroom %d / tailroom %d", ErrBadConfig, cfg.Headroom, cfg.Tailroom)
	}
	for _, d := range cfg.DNS {
		if !d.Is4() {
			return nil, fmt.Errorf("%w: DNS server %v is not IPv4", ErrBadConfig, d)
		}
	}
	cfg.DNS = append([]netip.Addr(nil), cfg.DNS...)
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}

	s := &Stack{cfg: cfg, logger: logger, out: out}
	s.gro.Init(true)
	bufSize := cfg.Headroom + cfg.MTU + cfg.Tailroom
	s.pool.New = func() any {
		b := make([]byte, bufSize)
		return &b
	}

	s.stack = stack.New(stack.Options{
		NetworkProtocols: []stack.NetworkProtocolFactory{
			// IGMP off: there is no multicast over the PPP link and we do
			// not want the stack to emit reports into the tunnel.
			ipv4.NewProtocolWithOptions(ipv4.Options{IGMP: ipv4.IGMPOptions{Enabled: false}}),
			s.ipv6Protocol(), // disabled until EnableIPv6
		},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol},
		// Packets to our own address are looped back inside the stack
		// instead of being sent into the tunnel.
		HandleLocal: true,
	})
	if err := s.setTCPOptions(); err != nil {
		s.stack.Destroy()
		return nil, err
	}

	s.link = newLinkEndpoint(uint32(cfg.MTU), cfg.Headroom, cfg.Tailroom, cfg.TCPGSO, &s.pool, logger)
	if !cfg.NoStallProbes {
		s.link.probe = newStallProber(s.link.getBuf, s.link.release, cfg.Headroom)
	}
	var nic stack.LinkEndpoint = s.link
	if cfg.Capture != nil {
		// The sniffer also logs every packet through gVisor's logger unless
		// told not to; the capture is all we want.
		sniffer.LogPackets.Store(0)
		sn, err := sniffer.NewWithWriter(s.link, cfg.Capture, maxMTU)
		if err != nil {
			s.stack.Destroy()
			return nil, fmt.Errorf("%w: capture: %w", ErrBadConfig, err)
		}
		nic = sn
	}
	if terr := s.stack.CreateNIC(nicID, nic); terr != nil {
		s.stack.Destroy()
		return nil, fmt.Errorf("%w: create NIC: %s", ErrBadConfig, terr)
	}
	s.disableIPv6()
	pa := tcpip.ProtocolAddress{
		Protocol: ipv4.ProtocolNumber,
		AddressWithPrefix: tcpip.AddressWithPrefix{
			Address:   tcpip.AddrFrom4(cfg.LocalAddr.As4()),
			PrefixLen: 32, // point-to-point: everything else is via the route below
		},
	}
	if terr := s.stack.AddProtocolAddress(nicID, pa, stack.AddressProperties{}); terr != nil {
		s.stack.Destroy()
		return nil, fmt.Errorf("%w: add address: %s", ErrBadConfig, terr)
	}
	s.stack.SetRouteTable([]tcpip.Route{{Destination: header.IPv4EmptySubnet, NIC: nicID}})

	s.link.wg.Add(1)
	go s.link.run(s.emit)
	return s, nil
}

// TCP tuning. Every option that matters is set explicitly so the behaviour
// does not silently change with a gVisor upgrade.
const (
	// Receive buffer: start at 256 KiB and let moderation (Linux-style
	// DRS auto-tuning) grow it to 4 MiB for long fat paths. 4 MiB covers
	// ~30 Mbit/s at 1 s RTT or ~300 Mbit/s at 100 ms — more than a
	// user-space IPsec tunnel will carry. Limits are not preallocated, so
	// idle proxy connections cost nothing.
	tcpRecvBufMin     = 4 << 10
	tcpRecvBufDefault = 256 << 10
	tcpRecvBufMax     = 4 << 20
	// Send buffer: gVisor does not auto-tune it, so the default must
	// already cover a typical bandwidth-delay product (1 MiB ≈ 80 Mbit/s
	// at 100 ms RTT).
	tcpSendBufMin     = 4 << 10
	tcpSendBufDefault = 1 << 20
	tcpSendBufMax     = 4 << 20
	// TIME-WAIT: Linux uses 60 s (2*MSL). A proxy opens many short
	// connections from one address; 30 s halves port occupancy while still
	// well above any RTT through the tunnel.
	tcpTimeWait = 30 * time.Second
	// RFC 6298 §2.4 says 1 s; Linux and gVisor use 200 ms, and so do we.
	// A 10 ms floor recovers from loss far faster in-process (BenchmarkLossy,
	// 5 % loss each way: 200 ms gave 0.5-0.8 MB/s, 50 ms 2.3-2.8, 20 ms 5-9,
	// 10 ms 9-11 with GSO), because gVisor falls back to an RTO for a lost
	// retransmission or tail more often than Linux. But a real server's TCP
	// delays its ACKs: against SoftEther (SecureNAT) a 16 MiB upload took
	// 6.5 s with 10 ms and 1.65 s with 200 ms (2026-12-01), and 30 s in a
	// loaded CI run: spurious timeouts collapse the window. The stall
	// probes (stall.go) are that other means: they repair what gVisor
	// would wait an RTO for within a few round trips, and leave the RTO
	// for a path that has gone silent.
	tcpMinRTO = 200 * time.Millisecond
	tcpMaxRTO = 120 * time.Second
)

func (s *Stack) setTCPOptions() error {
	opts := []struct {
		name string
		opt  tcpip.SettableTransportProtocolOption
	}{
		// SACK (RFC 2018): losses inside the tunnel come in bursts (an
		// ESP/UDP datagram lost = one segment lost, often several in a
		// row); SACK lets the sender repair them in one RTT instead of
		// go-back-N.
		{"sack", ptr(tcpip.TCPSACKEnabled(true))},
		// RACK-TLP (RFC 8985) loss detection, gVisor's default: time
		// based, so it also detects lost retransmissions and tail losses
		// without waiting for an RTO. Off (RFC 6675 SACK recovery) was
		// far worse through 5 % loss each way (BenchmarkLossy,
		// 2026-12-02: 0.40/0.18 MB/s and 124/153 RTOs per 16 MiB against
		// 2.7/2.6 MB/s and 20/24). The RTOs that remain come from gVisor's
		// sender: no probe during recovery, stale Outstanding on entering
		// it, no new data after the reorder timer (README, Performance);
		// the link's stall probes (stall.go) repair those stalls.
		{"recovery", ptr(tcpip.TCPRACKLossDetection)},
		// NewReno (RFC 5681/6582), not CUBIC. CUBIC would suit long-RTT
		// Internet paths better, but gVisor's CUBIC at this version can
		// collapse the window to 0: in the concave region getCwnd
		// applies cwnd += (W(t+RTT)-cwnd)/cwnd, and after repeated
		// losses (small WMax) W is below cwnd — even negative — so cwnd
		// shrinks on every ACK and truncates to 0. With nothing in
		// flight there is no RTO to recover, and the connection stalls
		// forever. TestBackPressure hit exactly that (SndCwnd=0,
		// Ssthresh=2, CLOSE-WAIT) in ~1 of 30 runs with "cubic" and never
		// in 100+ runs with "reno". With SACK + RACK, Reno recovers
		// losses well; the slower window growth is the price.
		{"congestion control", ptr(tcpip.CongestionControlOption("reno"))},
		// No Nagle (i.e. TCP_NODELAY everywhere): the proxies copy with
		// 32 KiB buffers so bulk data is already coalesced, and Nagle
		// combined with the peer's delayed ACKs adds 40-200 ms stalls to
		// request/response traffic (TLS handshakes, HTTP). Delayed ACKs
		// themselves stay on (gVisor acks every second full segment,
		// RFC 5681 §4.2, and quick-acks at connection start) — they halve
		// the ACK packets we have to encrypt and send up the tunnel.
		{"nagle", ptr(tcpip.TCPDelayEnabled(false))},
		{"receive buffer", &tcpip.TCPReceiveBufferSizeRangeOption{Min: tcpRecvBufMin, Default: tcpRecvBufDefault, Max: tcpRecvBufMax}},
		{"send buffer", &tcpip.TCPSendBufferSizeRangeOption{Min: tcpSendBufMin, Default: tcpSendBufDefault, Max: tcpSendBufMax}},
		{"moderate receive buffer", ptr(tcpip.TCPModerateReceiveBufferOption(true))},
		{"time-wait", ptr(tcpip.TCPTimeWaitTimeoutOption(tcpTimeWait))},
		{"min RTO", ptr(tcpip.TCPMinRTOOption(tcpMinRTO))},
		{"max RTO", ptr(tcpip.TCPMaxRTOOption(tcpMaxRTO))},
	}
	for _, o := range opts {
		if terr := s.stack.SetTransportProtocolOption(tcp.ProtocolNumber, o.opt); terr != nil {
			return fmt.Errorf("%w: TCP option %s: %s", ErrBadConfig, o.name, terr)
		}
	}
	return nil
}

func ptr[T any](v T) *T { return &v }

// emit runs on the link's out goroutine: each bps[i] is a pooled buffer
// holding one outbound packet after Headroom bytes (copied there by the
// link's WritePackets). It hands them to out (or OutBatch) and releases
// them.
func (s *Stack) emit(bps []*[]byte) {
	if len(bps) == 1 || s.cfg.OutBatch == nil {
		for _, bp := range bps {
			if err := s.out(*bp, s.cfg.Headroom); err != nil {
				c := s.link.outErrs.Add(1)
				s.logger.Debug("netstack: out failed", "err", err, "errors_total", c)
			}
			s.link.release(bp)
		}
		return
	}
	bufs := s.outBufs[:0]
	for _, bp := range bps {
		bufs = append(bufs, *bp)
	}
	if err := s.cfg.OutBatch(bufs, s.cfg.Headroom); err != nil {
		c := s.link.outErrs.Add(1)
		s.logger.Debug("netstack: out failed", "err", err, "errors_total", c)
	}
	for _, bp := range bps {
		s.link.release(bp)
	}
	clear(bufs)
	s.outBufs = bufs[:0]
}

// InjectInbound delivers one IPv4 packet received from the tunnel to the
// stack. pkt is copied; the caller may reuse it on return. It must be called
// from one goroutine at a time. It never blocks on the outbound queue.
func (s *Stack) InjectInbound(pkt []byte) error {
	err := s.EnqueueInbound(pkt)
	if errors.Is(err, ErrClosed) {
		return err // after Close: GRO's state is not touched (another goroutine may have been the last to)
	}
	s.FlushInbound()
	return err
}

// EnqueueInbound is InjectInbound for a burst of packets (say, one batch
// read from the socket): TCP segments may be held back to be coalesced with
// the following segments of their flow (generic receive offload, like
// Linux's GRO) until FlushInbound, which the caller must call at the end
// of the burst. pkt is copied. Same goroutine rule as InjectInbound.
func (s *Stack) EnqueueInbound(pkt []byte) error {
	select {
	case <-s.link.done:
		return ErrClosed
	default:
	}
	if len(pkt) >= header.IPv6MinimumSize && header.IPVersion(pkt) == header.IPv6Version {
		return s.deliverIPv6(pkt)
	}
	if len(pkt) < header.IPv4MinimumSize || header.IPVersion(pkt) != header.IPv4Version {
		return fmt.Errorf("%w (%d bytes)", ErrNotIPv4, len(pkt))
	}
	d := s.link.getDispatcher()
	if d == nil {
		return ErrClosed
	}
	pb := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(pkt)})
	pb.NetworkProtocolNumber = ipv4.ProtocolNumber
	if checksumsValid(pkt) {
		if s.link.probe != nil {
			s.link.probe.heard(pkt) // what gVisor will take (a bad checksum it drops)
		}
		s.groEnqueue(d, pb)
	} else {
		// Not verified here (a fragment, another protocol, a bad
		// checksum): gVisor checks every checksum itself (see
		// linkEndpoint.Capabilities). Held segments go first, in order.
		s.FlushInbound()
		s.link.rxOffload.Store(false)
		d.DeliverNetworkPacket(ipv4.ProtocolNumber, pb)
		s.link.rxOffload.Store(true)
	}
	pb.DecRef()
	return nil
}

// deliverIPv6 hands an IPv6 packet to gVisor, which checks its checksums
// (no GRO: IPv6 is the rare case here). A disabled IPv6 endpoint drops it.
func (s *Stack) deliverIPv6(pkt []byte) error {
	d := s.link.getDispatcher()
	if d == nil {
		return ErrClosed
	}
	s.FlushInbound()
	pb := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(pkt)})
	s.link.rxOffload.Store(false)
	d.DeliverNetworkPacket(ipv6.ProtocolNumber, pb)
	s.link.rxOffload.Store(true)
	pb.DecRef()
	return nil
}

// groEnqueue hands pb to GRO, and flushes once groMaxHeld packets are held.
func (s *Stack) groEnqueue(d stack.NetworkDispatcher, pb *stack.PacketBuffer) {
	s.gro.Dispatcher = d
	s.gro.Enqueue(pb)
	s.groHeld++
	if s.groHeld >= groMaxHeld {
		s.FlushInbound()
	}
}

// groMaxHeld bounds what GRO coalesces: at most this many segments (of all
// flows together) are held before they are delivered. gVisor's receiver
// sends one ACK per segment it is handed, so a segment coalesced from a
// whole burst (up to 64 KiB) is acknowledged by a single ACK; when that
// ACK is lost the sender hears nothing for the burst, and if its one
// tail-loss probe (or the probe's ACK) is lost as well it waits for the
// 200 ms RTO. Through 5 % loss each way (BenchmarkLossy, 16 MiB,
// 2026-12-02, load 0.4-3.6) unbounded GRO gave 2.2-3.4 MB/s down with
// 15.5-26 RTOs per transfer and 1.7-2.4 MB/s up; at most 2 held 4.2 MB/s
// down (11.5-12 RTOs) and 2.8-3.2 up; no GRO 3.2-5.7 down (9.5-15 RTOs)
// and 2.5-4.8 up. Two is what a receiver without GRO acknowledges with
// delayed ACKs (RFC 5681 §4.2: every second full-sized segment); the CPU
// GRO saved goes with the ACKs it saved (testdata/bench/e2e, GCM download,
// load 4-5: unbounded 5.4-7.0 CPU-s/GiB, 2 held 7.0-8.1, none 6.7-8.5).
const groMaxHeld = 2

// FlushInbound delivers the packets EnqueueInbound held back.
//
// gVisor's GRO.Flush (this version and v0.0.0-20260701204157) delivers only
// the first held packet of each of its 8 hash buckets: removeOne clears the
// list links of the packet the loop is on, so Next() ends the walk. With
// more flows than buckets, a segment of a flow that shares a bucket stays
// held until a later burst, or until that flow's next segment arrives: the
// receiver ACKs late and the sender times out. A bucket holds at most
// groBucketSize (8) packets, so flushing that many times empties them all
// (each call costs 8 bucket looks when there is nothing left); fewer calls
// do when fewer packets were held.
func (s *Stack) FlushInbound() {
	if s.groHeld == 0 {
		return // nothing held (and nothing written: InjectInbound after Close only reads)
	}
	for range min(s.groHeld, groBucketSize) {
		s.gro.Flush()
	}
	s.groHeld = 0
}

// groBucketSize is gVisor's GRO bucket capacity (gro.groBucketSize).
const groBucketSize = 8

// checksumsValid reports whether pkt (an IPv4 packet) has a valid header
// checksum and, for TCP and UDP, a valid transport checksum, so that the
// stack need not check them again. It is false for anything it cannot
// check completely: fragments (the transport checksum covers the
// reassembled datagram), protocols other than TCP, UDP and ICMP (gVisor
// checks ICMP checksums itself, whatever the link declares), and
// malformed packets.
func checksumsValid(pkt []byte) bool {
	h := header.IPv4(pkt)
	hl, tl := int(h.HeaderLength()), int(h.TotalLength())
	if hl < header.IPv4MinimumSize || tl < hl || tl > len(pkt) {
		return false
	}
	if checksum.Checksum(pkt[:hl], 0) != 0xffff {
		return false
	}
	if h.More() || h.FragmentOffset() != 0 {
		return false
	}
	proto := tcpip.TransportProtocolNumber(h.Protocol())
	l4 := pkt[hl:tl]
	switch proto {
	case header.ICMPv4ProtocolNumber:
		return true
	case header.TCPProtocolNumber:
		if len(l4) < header.TCPMinimumSize {
			return false
		}
	case header.UDPProtocolNumber:
		if len(l4) < header.UDPMinimumSize {
			return false
		}
		if header.UDP(l4).Checksum() == 0 {
			return true // RFC 768: the sender computed no checksum
		}
	default:
		return false
	}
	sum := header.PseudoHeaderChecksum(proto, h.SourceAddress(), h.DestinationAddress(), uint16(len(l4)))
	return checksum.Checksum(l4, sum) == 0xffff
}

// Close aborts every connection and stops the stack. It waits for an
// in-progress out call to return; no out call starts after Close returns.
func (s *Stack) Close() error {
	s.closeOnce.Do(func() {
		t := s.stack.Stats().TCP
		s.logger.Debug("tcp totals", "segments_sent", t.SegmentsSent.Value(), "segments_received", t.ValidSegmentsReceived.Value(),
			"retransmits", t.Retransmits.Value(), "fast_retransmits", t.FastRetransmit.Value(), "timeouts", t.Timeouts.Value(),
			"sack_recovery", t.SACKRecovery.Value(), "slow_start_retransmits", t.SlowStartRetransmits.Value(),
			"stall_probes", s.link.probe.count())
		s.link.shutdown() // wake writers blocked on a full queue first
		s.stack.Close()
		s.stack.Wait()
		s.link.wg.Wait()
	})
	return nil
}

// Stats is a snapshot of link-level counters.
type Stats struct {
	OutDropped uint64 // best-effort packets (ICMP, RST) dropped on a full out queue
	OutBlocked uint64 // packet writes that waited for space in the out queue (back-pressure)
	OutErrors  uint64 // out() calls that returned an error
}

// TCPStats is a snapshot of the stack's TCP counters, summed over its
// connections: how the senders recovered from loss.
type TCPStats struct {
	SegmentsSent, SegmentsReceived uint64
	Retransmits                    uint64 // segments sent again, for any reason
	FastRetransmits                uint64 // after duplicate ACKs or RACK, without a timeout
	SACKRecovery, TLPRecovery      uint64 // recovery episodes by SACK, tail-loss probes repaired
	Timeouts                       uint64 // retransmission timeouts (RTO)
	SpuriousRecovery               uint64 // recoveries undone (DSACK showed no loss)
	ListenOverflow                 uint64 // SYNs dropped: a listener's accept queue was full
	Dropped                        uint64 // packets the stack dropped (any protocol: full queues, bad packets)
	StallProbes                    uint64 // segments the link re-sent because their flow fell silent (stall.go)
}

// Add adds b's counters to a's.
func (a *TCPStats) Add(b TCPStats) {
	a.SegmentsSent += b.SegmentsSent
	a.SegmentsReceived += b.SegmentsReceived
	a.Retransmits += b.Retransmits
	a.FastRetransmits += b.FastRetransmits
	a.SACKRecovery += b.SACKRecovery
	a.TLPRecovery += b.TLPRecovery
	a.Timeouts += b.Timeouts
	a.SpuriousRecovery += b.SpuriousRecovery
	a.ListenOverflow += b.ListenOverflow
	a.Dropped += b.Dropped
	a.StallProbes += b.StallProbes
}

// TCPStats returns the stack's TCP counters (zero for a nil Stack: a
// tunnel whose stack is not up yet).
func (s *Stack) TCPStats() TCPStats {
	if s == nil {
		return TCPStats{}
	}
	t := s.stack.Stats().TCP
	return TCPStats{
		SegmentsSent: t.SegmentsSent.Value(), SegmentsReceived: t.ValidSegmentsReceived.Value(),
		Retransmits: t.Retransmits.Value(), FastRetransmits: t.FastRetransmit.Value(),
		SACKRecovery: t.SACKRecovery.Value(), TLPRecovery: t.TLPRecovery.Value(),
		Timeouts: t.Timeouts.Value(), SpuriousRecovery: t.SpuriousRecovery.Value(),
		ListenOverflow: t.ListenOverflowSynDrop.Value(), Dropped: s.stack.Stats().DroppedPackets.Value(),
		StallProbes: s.link.probe.count(),
	}
}

// Stats returns link-level counters.
func (s *Stack) Stats() Stats {
	return Stats{
		OutDropped: s.link.dropped.Load(),
		OutBlocked: s.link.blocked.Load(),
		OutErrors:  s.link.outErrs.Load(),
	}
}
