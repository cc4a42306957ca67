// Package datapath is the packet pipeline between the UDP socket and the
// layers above ESP: ESP seal/open, the inner UDP header of transport mode,
// L2TP data framing and PPP framing. It is role-neutral: the client and the
// in-process test server both run one.
//
// Per-packet layout of everything sent through the tunnel. One buffer holds
//
//	[ESP header+IV][inner UDP 8][L2TP data header][FF 03 proto 2][IP packet][ESP pad+trailer+ICV]
//	 <----------------------- Headroom ----------------------->            <--- Tailroom --->
//
// The IP packet is copied once, out of gVisor, into such a buffer; every
// header is then written in front of it and ESP encrypts in place
// (wireguard-go's send.go does the same with its transport-header headroom).
// Received packets are decrypted in place and headers are trimmed, never
// copied; only control traffic, which leaves for another goroutine, is cloned.
package datapath

import (
	"cmp"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/l2tpproxy/l2tpproxy/tunnel/clock"
	"github.com/l2tpproxy/l2tpproxy/tunnel/esp"
	"github.com/l2tpproxy/l2tpproxy/tunnel/l2tp"
	"github.com/l2tpproxy/l2tpproxy/tunnel/ppp"
)

const (
	udpHeaderLen  = 8
	pppHeaderLen  = 4  // FF 03 + 2-byte protocol: we never compress on send
	maxESPHeader  = 24 // SPI + Seq + 16-byte IV (AES-CBC); GCM and 3DES need less
	maxL2TPHeader = 12 // flags, length, tunnel, session, Ns, Nr

	// Headroom is what the network stack must leave in front of each
	// outbound IP packet.
	Headroom = maxESPHeader + udpHeaderLen + maxL2TPHeader + pppHeaderLen
	// Tailroom is the spare capacity it must leave after it: ESP padding
	// (< 16), pad length, next header and an ICV of up to 32 bytes.
	Tailroom = 64

	maxDatagram = 65535
	protoUDP    = 17
)

// Errors of the send path.
var (
	ErrNoSA      = errors.New("datapath: no IPsec SA")
	ErrNoSession = errors.New("datapath: no L2TP session")
	ErrTooBig    = errors.New("datapath: packet too big")
)

// ControlSink takes L2TP control packets (the LAC or LNS).
type ControlSink interface{ HandleControl(pkt []byte) }

// FrameSink takes PPP frames other than IPv4 (the PPP client or server).
type FrameSink interface{ HandleFrame(frame []byte) }

// IPSink takes inbound IPv4 packets (the network stack). It must copy.
type IPSink interface{ InjectInbound(pkt []byte) error }

// IPBurstSink is an IPSink that can take a burst of packets more cheaply:
// it may hold packets given to EnqueueInbound (to coalesce TCP segments)
// until FlushInbound. netstack.Stack is one.
type IPBurstSink interface {
	IPSink
	EnqueueInbound(pkt []byte) error
	FlushInbound()
}

// Conn is what a Path and a Receiver need of a UDP socket. A *net.UDPConn
// is one, and gets batched system calls (recvmmsg, sendmmsg, UDP GSO/GRO on
// Linux); any other (tunnel/memnet's in-memory one) gets one datagram per
// call.
type Conn interface {
	ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error)
	WriteToUDPAddrPort(b []byte, to netip.AddrPort) (int, error)
	LocalAddr() net.Addr
	Close() error
}

// Config fixes what does not change for the life of a path.
type Config struct {
	Conn Conn      // the socket shared with IKE (RFC 3948 §2.1)
	Rand io.Reader // for ESP IVs
	// Addresses and ports of the inner UDP header (transport mode, so these
	// are the original addresses the NAT-OA payloads announced).
	LocalIP, PeerIP     netip.Addr
	LocalPort, PeerPort uint16
	// NoGSO sends one datagram per message (still many per sendmmsg), as a
	// real server does, instead of coalescing runs of equal-size datagrams
	// into UDP_SEGMENT sends. The test server uses it so that the client
	// is measured against what real servers send.
	NoGSO bool
	// SeqLow, if set, is called (from a sending goroutine, with the send
	// lock held: it must not block) with the outbound SA's SPI once its
	// sequence number reaches SeqSoftLimit, and again every 4096 packets
	// after, until a new SA is installed: the owner rekeys it
	// (RFC 4303 §3.3.3: the counter must not cycle).
	SeqLow       func(outboundSPI uint32)
	SeqSoftLimit uint64 // default DefaultSeqSoftLimit
	// BytesLow, like SeqLow (and under the same constraints), is called
	// with the outbound SPI of the current pair when a byte lifetime set
	// by SetByteLifetime runs low (see byteLife).
	BytesLow func(outboundSPI uint32)
	// Exhausted, if set, is called (like SeqLow) when a sender held at an
	// exhausted outbound SA gave up after HoldTimeout (see hold.go): the
	// owner sets the tunnel up again.
	Exhausted func(outboundSPI uint32)
	// HoldTimeout overrides the package's HoldTimeout (0: that).
	HoldTimeout time.Duration
	// Clock times the switch to a rekey's SA and held senders (default
	// clock.Real).
	Clock clock.Clock
}

// DefaultSeqSoftLimit leaves 2^26 (67 million) packets for the rekey: at a
// gigabit of 1,400-byte packets that is over ten minutes.
const DefaultSeqSoftLimit = 1<<32 - 1<<26

// Path is one ESP/L2TP/PPP pipeline. Everything a packet needs is read
// through atomics, so control-plane owners can swap SAs (rekey), sessions or
// sinks while traffic flows. All methods are safe for concurrent use; Receive
// is meant to be called by the socket's single reader.
type Path struct {
	cfg          Config
	srcIP, dstIP [4]byte

	dst atomic.Pointer[netip.AddrPort] // where ESP goes: the peer's NAT-T address
	out atomic.Pointer[esp.Outbound]
	in  atomic.Pointer[esp.Inbound]
	// prevIn are the inbound SAs the last rekeys replaced, newest first,
	// for packets the peer sent before it switched: a server that rekeys
	// every few hundred milliseconds (or our own rekey racing one of its
	// own) can have several generations in flight at once.
	prevIn [prevInbound]atomic.Pointer[esp.Inbound]
	// pending are inbound SAs of Quick Modes not finished yet (pending.go).
	pending pending
	// nextOut is a rekey's outbound SA, not used yet: we send on the old
	// one until the peer shows it has the new pair (its first packet on
	// our new inbound SA), or the peer deletes the old one, or
	// OutboundSwitchDelay has passed (nextOutAt, unix nanoseconds).
	// Switching at once loses what we send before the peer installed its
	// inbound SA (a responder may do that only when QM3 arrives).
	nextOut   atomic.Pointer[esp.Outbound]
	nextOutAt atomic.Int64
	life      atomic.Pointer[byteLife] // the newest pair's kilobyte lifetime, nil: none
	session   atomic.Pointer[l2tp.Session]
	control   atomic.Pointer[ControlSink]
	frames    atomic.Pointer[FrameSink]
	ip        atomic.Pointer[IPSink]
	dataNs    atomic.Uint32 // next Ns of sequenced data messages (RFC 2661 §5.4)
	sent      atomic.Bool   // something was sent since the last TakeSent

	bufs sync.Pool // *[]byte of Headroom+maxDatagram+Tailroom

	held IPBurstSink // holds packets until Flush; only the reader uses it
	rx   rxBurst     // the datagrams Queue took; only the reader uses it
	// worker is the running RunCrypto's mailbox, nil: none (parallel.go).
	worker    atomic.Pointer[cryptoWorker]
	shareAEAD bool // share AES-GCM bursts with the worker too (tests)
	// afterHandOff, if set, runs on the reader right after it shared a
	// burst, before it claims any packet (tests).
	afterHandOff func(*rxBurst)

	// txMu serialises sealing and sending, so that datagrams leave in
	// sequence-number order whichever goroutine sends: a batch of sealed
	// datagrams overtaken by a later one could otherwise fall behind a
	// peer's anti-replay window (32 packets on Linux by default).
	txMu   sync.Mutex
	tx     *sender  // batched sends (sendmmsg + UDP GSO on Linux)
	txPkts [][]byte // sealed datagrams of the batch in progress
	// txCrypt holds the AES-CBC encryption and ICVs of txPkts' datagrams
	// (esp.Outbound.SealTo), run by flushLocked four datagrams at a time
	// before any of them is sent.
	txCrypt esp.Batch

	hold holdState // senders held at an exhausted SA (hold.go)

	// Counters, for diagnostics and tests.
	RxESP, RxDropped, TxESP atomic.Uint64
	// RxParallel counts the packets the crypto worker unsealed.
	RxParallel atomic.Uint64
	// Per layer and per drop reason (Stats). The reader counts a burst's
	// packets in rxBurst, plain fields only it touches, and publishes them
	// to rxc in Flush: one atomic add per counter per burst, not per packet.
	rxc     rxCounters
	txc     txCounters
	rxBurst rxBurstCounts
}

// New returns a path with no SA, session or sinks yet.
func New(cfg Config) *Path {
	if cfg.Clock == nil {
		cfg.Clock = clock.Real
	}
	p := &Path{cfg: cfg, srcIP: cfg.LocalIP.As4(), dstIP: cfg.PeerIP.As4(), tx: newSender(cfg.Conn, !cfg.NoGSO)}
	p.bufs.New = func() any {
		b := make([]byte, Headroom+maxDatagram+Tailroom)
		return &b
	}
	p.hold.init()
	return p
}

// SetPeer sets where ESP datagrams are sent.
func (p *Path) SetPeer(a netip.AddrPort) { p.dst.Store(&a) }

// InstallSA makes a newly negotiated SA pair current. The inbound SA it
// replaces stays usable for packets the peer sent before it switched. With
// peerMayLag (we initiated the rekey: the peer installs the pair when our
// QM3 arrives), the old outbound SA carries on until the peer sends on the
// new pair, deletes the old one, or OutboundSwitchDelay passed.
func (p *Path) InstallSA(in, out esp.Keys) error { return p.installSA(in, out, false, 0) }

// InstallSAPeerMayLag is InstallSA for a pair whose Quick Mode we started.
func (p *Path) InstallSAPeerMayLag(in, out esp.Keys) error { return p.installSA(in, out, true, 0) }

// InstallLimitedSA is InstallSA (peerMayLag: InstallSAPeerMayLag) for a
// pair with a byte lifetime: its outbound SA is limited to byteLimit bytes
// before any sender can reach it (SetByteLifetime, which must follow for
// the rekey requests, would leave a window in which a sender seals on it
// unlimited).
func (p *Path) InstallLimitedSA(in, out esp.Keys, peerMayLag bool, byteLimit uint64) error {
	return p.installSA(in, out, peerMayLag, byteLimit)
}

func (p *Path) installSA(in, out esp.Keys, peerMayLag bool, byteLimit uint64) error {
	o, err := esp.NewOutbound(out, p.cfg.Rand)
	if err != nil {
		return err
	}
	o.SetByteLimit(byteLimit)
	i := p.preparedFor(in) // PrepareInbound's, with what it received
	if i == nil {
		if i, err = esp.NewInbound(in); err != nil {
			return err
		}
	}
	p.life.Store(nil) // SetByteLifetime sets the new pair's
	if old := p.in.Swap(i); old != nil {
		for i := prevInbound - 1; i > 0; i-- {
			p.prevIn[i].Store(p.prevIn[i-1].Load())
		}
		p.prevIn[0].Store(old)
	}
	// Only now: Receive finds a prepared SA in one place or the other.
	p.forgetPrepared(i)
	if !peerMayLag || p.out.Load() == nil { // the first SA: nothing to carry on with
		p.nextOut.Store(nil)
		p.setOut(o)
		return nil
	}
	p.nextOutAt.Store(p.now().Add(OutboundSwitchDelay).UnixNano())
	p.nextOut.Store(o)
	p.hold.signal()
	return nil
}

// prevInbound is how many replaced inbound SAs stay usable.
const prevInbound = 3

// previous returns the replaced inbound SA with this SPI, if any, or a
// prepared one (PrepareInbound).
func (p *Path) previous(spi uint32) *esp.Inbound {
	for i := range p.prevIn {
		if prev := p.prevIn[i].Load(); prev != nil && prev.SPI() == spi {
			return prev
		}
	}
	return p.prepared(spi)
}

// OutboundSwitchDelay bounds how long a rekey's new outbound SA waits for
// the peer to show it has the new pair (see Path.nextOut).
const OutboundSwitchDelay = 2 * time.Second

// PeerDeleted is told that the peer deleted the SA pair whose inbound SPI
// is inSPI. If that is the pair a rekey replaced, we send on the new one
// at once: the Delete is proof enough that the peer has it.
func (p *Path) PeerDeleted(inSPI uint32) {
	if prev := p.prevIn[0].Load(); prev != nil && prev.SPI() == inSPI {
		p.SwitchOutbound()
	}
}

// SwitchOutbound sends on the newest SA from now on.
func (p *Path) SwitchOutbound() {
	if o := p.nextOut.Swap(nil); o != nil {
		p.setOut(o)
	}
}

// outbound is the SA to seal with: the current one, or the pending one
// once its time has come.
func (p *Path) outbound() *esp.Outbound {
	if p.nextOut.Load() != nil && p.now().UnixNano() >= p.nextOutAt.Load() {
		p.SwitchOutbound()
	}
	return p.out.Load()
}

// SetSession sets the L2TP session data messages belong to.
func (p *Path) SetSession(s l2tp.Session) { p.session.Store(&s) }

// SetControl sets the receiver of L2TP control packets.
func (p *Path) SetControl(s ControlSink) { p.control.Store(&s) }

// SetFrames sets the receiver of PPP frames other than IPv4.
func (p *Path) SetFrames(s FrameSink) { p.frames.Store(&s) }

// SetIP sets the receiver of inbound IPv4 packets.
func (p *Path) SetIP(s IPSink) { p.ip.Store(&s) }

// TakeSent reports whether anything was sent since the last call.
func (p *Path) TakeSent() bool { return p.sent.Swap(false) }

// InnerMTU is the largest IP packet that fits one outer datagram of outerMTU
// bytes with the current ESP suite (padding counted at its maximum) and our
// L2TP and PPP headers.
func (p *Path) InnerMTU(outerMTU int) int {
	overhead := 20 + udpHeaderLen + udpHeaderLen + l2tp.DataHeaderLen(false) + pppHeaderLen
	if o := p.out.Load(); o != nil {
		overhead += o.Headroom() + o.Tailroom()
	} else {
		overhead += maxESPHeader + Tailroom
	}
	return min(max(outerMTU-overhead, 576), 1500)
}

// WriteTo sends a raw datagram (IKE, keepalive) from the shared socket.
func (p *Path) WriteTo(b []byte, to netip.AddrPort) error {
	p.sent.Store(true)
	_, err := p.cfg.Conn.WriteToUDPAddrPort(b, to)
	return err
}

// SendIP is the network stack's output: buf[headroom:] is one IPv4 packet
// and headroom >= Headroom, cap(buf)-len(buf) >= Tailroom.
func (p *Path) SendIP(buf []byte, headroom int) error {
	s := p.session.Load()
	if s == nil {
		return ErrNoSession
	}
	if err := p.seal(buf, p.frameIP(buf, headroom, s)); err != nil {
		return err
	}
	n := len(buf) - headroom
	p.txc.ip.add(1, n)
	p.txc.ppp.add(1, n+pppHeaderLen)
	return nil
}

// SendIPBatch is SendIP for many packets: each bufs[i][headroom:] is one
// IPv4 packet. All are sealed, then sent with as few system calls as the
// platform allows (sendmmsg, and UDP GSO for runs of equal-size datagrams).
// It returns the first error; packets that could be sealed are still sent.
func (p *Path) SendIPBatch(bufs [][]byte, headroom int) error {
	s := p.session.Load()
	if s == nil {
		return ErrNoSession
	}
	out, dst := p.outbound(), p.dst.Load()
	if out == nil || dst == nil {
		return ErrNoSA
	}
	p.txMu.Lock()
	defer p.txMu.Unlock()
	var first error
	p.txPkts = p.txPkts[:0]
	ipPkts, ipBytes := 0, 0
	flushSealed := func() { first = cmp.Or(first, p.flushLocked(*dst)) } // before a hold
	for i, buf := range bufs {
		n := len(buf) - headroom
		pkt, sa, err := p.sealOrHold(out, buf, p.frameIP(buf, headroom, s), flushSealed)
		if err != nil {
			first = cmp.Or(first, err)
			if sa == nil { // no SA to go on with: the rest fails too
				p.txc.failed.add(len(bufs)-i, 0)
				break
			}
			p.txc.failed.add(1, n)
			continue
		}
		out = sa
		ipPkts++
		ipBytes += n
		p.txPkts = append(p.txPkts, pkt)
	}
	p.txc.ip.add(ipPkts, ipBytes)
	p.txc.ppp.add(ipPkts, ipBytes+pppHeaderLen*ipPkts)
	if err := p.flushLocked(*dst); err != nil {
		return err
	}
	return first
}

// frameIP writes the PPP and L2TP headers in front of buf[headroom:] and
// returns where the inner UDP header starts.
func (p *Path) frameIP(buf []byte, headroom int, s *l2tp.Session) int {
	l2 := l2tp.DataHeaderLen(s.SequencedData)
	start := headroom - pppHeaderLen - l2 - udpHeaderLen
	h := buf[start+udpHeaderLen:]
	p.putData(h, s, l2)
	h[l2], h[l2+1] = 0xFF, 0x03
	proto := ppp.ProtoIPv4
	if len(buf) > headroom && buf[headroom]>>4 == 6 {
		proto = ppp.ProtoIPv6 // RFC 5072 §3: IPv6 packets as PPP protocol 0x0057
	}
	binary.BigEndian.PutUint16(h[l2+2:], proto)
	return start
}

// SendPPP sends a PPP frame (protocol + information) in an L2TP data message.
func (p *Path) SendPPP(frame []byte) error {
	s := p.session.Load()
	if s == nil {
		return ErrNoSession
	}
	if len(frame) > maxDatagram-Headroom {
		return ErrTooBig
	}
	bp := p.bufs.Get().(*[]byte)
	defer p.bufs.Put(bp)
	l2 := l2tp.DataHeaderLen(s.SequencedData)
	start := Headroom - 2 - l2 - udpHeaderLen
	buf := (*bp)[:Headroom+len(frame)]
	copy(buf[Headroom:], frame)
	h := buf[start+udpHeaderLen:]
	p.putData(h, s, l2)
	h[l2], h[l2+1] = 0xFF, 0x03 // RFC 2661 leaves it open; Linux always sends FF 03 (NOTES §6)
	if err := p.seal(buf, start); err != nil {
		return err
	}
	p.txc.ppp.add(1, len(frame)+2)
	return nil
}

func (p *Path) putData(h []byte, s *l2tp.Session, l2 int) {
	var ns uint16
	if s.SequencedData {
		ns = uint16(p.dataNs.Add(1) - 1)
	}
	l2tp.PutDataHeader(h[:l2], s.PeerTunnelID, s.PeerSessionID, s.SequencedData, ns)
}

// SendL2TP sends one L2TP control packet.
func (p *Path) SendL2TP(pkt []byte) error {
	if len(pkt) > maxDatagram-Headroom {
		return ErrTooBig
	}
	bp := p.bufs.Get().(*[]byte)
	defer p.bufs.Put(bp)
	buf := (*bp)[:Headroom+len(pkt)]
	copy(buf[Headroom:], pkt)
	if err := p.seal(buf, Headroom-udpHeaderLen); err != nil {
		return err
	}
	p.txc.l2tpControl.add(1, len(pkt))
	return nil
}

// seal writes the inner UDP header at buf[start:], ESP-seals buf[start:] in
// place (header into the headroom before start, trailer into the capacity
// after len(buf)) and sends the datagram to the peer's NAT-T address.
func (p *Path) seal(buf []byte, start int) error {
	out, dst := p.outbound(), p.dst.Load()
	if out == nil || dst == nil {
		return ErrNoSA
	}
	p.txMu.Lock()
	defer p.txMu.Unlock()
	pkt, _, err := p.sealOrHold(out, buf, start, nil)
	if err != nil {
		p.txc.failed.add(1, len(buf)-start)
		return err
	}
	p.txPkts = append(p.txPkts[:0], pkt)
	return p.flushLocked(*dst)
}

// flushLocked sends the sealed datagrams in p.txPkts. txMu is held.
func (p *Path) flushLocked(dst netip.AddrPort) error {
	pkts := p.txPkts
	if err := p.txCrypt.Finish(); err != nil {
		// Not encrypted: none may leave (esp.Batch.Finish; a bug).
		p.txc.failed.add(len(pkts), 0)
		clear(p.txPkts)
		p.txPkts = pkts[:0]
		return err
	}
	if len(pkts) == 0 {
		return nil
	}
	p.sent.Store(true)
	p.TxESP.Add(uint64(len(pkts)))
	n := 0
	for _, pkt := range pkts {
		n += len(pkt)
	}
	p.txc.esp.add(len(pkts), n)
	var err error
	if p.tx.ok() {
		err = p.tx.write(pkts, dst)
	} else {
		for _, pkt := range pkts {
			if _, err = p.cfg.Conn.WriteToUDPAddrPort(pkt, dst); err != nil {
				break
			}
		}
	}
	clear(p.txPkts) // do not keep pooled buffers reachable
	p.txPkts = pkts[:0]
	return err
}

// sealOne writes the inner UDP header at buf[start:] and ESP-seals
// buf[start:] in place, returning the datagram. For AES-CBC its encryption
// and ICV wait in p.txCrypt for flushLocked. txMu is held.
func (p *Path) sealOne(out *esp.Outbound, buf []byte, start int) ([]byte, error) {
	u := buf[start:]
	binary.BigEndian.PutUint16(u[0:], p.cfg.LocalPort)
	binary.BigEndian.PutUint16(u[2:], p.cfg.PeerPort)
	binary.BigEndian.PutUint16(u[4:], uint16(len(u)))
	u[6], u[7] = 0, 0
	binary.BigEndian.PutUint16(u[6:], udpChecksum(p.srcIP, p.dstIP, u))
	pkt, err := out.SealTo(&p.txCrypt, buf, start, protoUDP) // flushLocked finishes it
	if err == nil {
		p.countTx(out.SPI(), len(pkt))
	}
	if p.cfg.SeqLow != nil && err == nil {
		if n := out.SentSeq(); n >= p.seqSoftLimit() && (n-p.seqSoftLimit())%4096 == 0 {
			p.askRekey(out.SPI(), p.cfg.SeqLow)
		}
	}
	return pkt, err
}

func (p *Path) seqSoftLimit() uint64 {
	if p.cfg.SeqSoftLimit == 0 {
		return DefaultSeqSoftLimit
	}
	return p.cfg.SeqSoftLimit
}

// Flush opens and delivers the datagrams Queue took (on two cores when a
// crypto worker runs and the burst is big enough), then delivers what the
// IP sink held back during the burst. Only the goroutine that calls Receive
// and Queue may call it.
func (p *Path) Flush() {
	p.openQueued()
	p.publishRx()
	p.flushHeld()
}

// flushHeld hands the IP sink's held packets to the stack.
func (p *Path) flushHeld() {
	if h := p.held; h != nil {
		p.held = nil
		h.FlushInbound()
	}
}

// Receive opens one ESP datagram in place and hands its content up: IPv4
// to the IP sink (which copies it), control traffic (cloned, since it
// crosses to another goroutine) to the owning layer. dg is not retained.
// Receive is called for each datagram of a burst (a batch read from the
// socket): an IP sink that is an IPBurstSink may hold packets until Flush,
// which the reader must call at the end of the burst.
func (p *Path) Receive(dg []byte) {
	in, prev := p.inboundFor(dg)
	if in == nil {
		return
	}
	payload, nh, err := in.Open(dg)
	p.deliver(in, prev, dg, payload, nh, err)
}

// inboundFor returns the inbound SA for dg (prev: a replaced one), or nil
// after counting the drop.
func (p *Path) inboundFor(dg []byte) (in *esp.Inbound, prev bool) {
	in = p.in.Load()
	if in == nil {
		// Before the first pair is installed, only a prepared SA opens
		// packets: a responder's first ESP right behind the peer's QM3.
		spi, _ := esp.PeekSPI(dg)
		if in = p.prepared(spi); in == nil {
			p.drop(DropNoSA)
		}
		return in, true
	}
	if spi, _ := esp.PeekSPI(dg); spi != in.SPI() {
		if in = p.previous(spi); in == nil {
			p.drop(DropUnknownSPI)
		}
		return in, true
	}
	return in, false
}

// deliver hands up what in.Open(dg) (or Unseal and Commit) returned.
func (p *Path) deliver(in *esp.Inbound, prev bool, dg, payload []byte, nh byte, err error) {
	if err != nil {
		p.drop(openDropReason(err))
		return
	}
	if nh != protoUDP || len(payload) < udpHeaderLen {
		p.drop(DropNotUDP)
		return
	}
	if !prev && p.nextOut.Load() != nil {
		// An authentic packet on the newest inbound SA: the peer has the
		// new pair, so it can take what we send on it.
		p.peerSwitched()
	}
	p.RxESP.Add(1)
	p.rxBurst.esp.count(len(dg))
	p.countRx(in.SPI(), len(dg))
	// The inner UDP checksum is not verified: behind NAT it covers addresses
	// we never see (RFC 3948 §3.1.2), and the ESP ICV already protects it.
	if ul := int(binary.BigEndian.Uint16(payload[4:])); ul >= udpHeaderLen && ul <= len(payload) {
		payload = payload[:ul]
	}
	msg := payload[udpHeaderLen:]
	if l2tp.IsControl(msg) {
		p.rxc.l2tpControl.add(1, len(msg))
		if c := p.control.Load(); c != nil {
			(*c).HandleControl(clone(msg))
		}
		return
	}
	_, sid, frame, err := l2tp.ParseData(msg)
	if err != nil {
		p.drop(DropL2TPMalformed)
		return
	}
	// The peer may send its first PPP frames before our control plane has
	// seen the session come up (pppd sends LCP as soon as ICCN arrives);
	// they go to the frame sink, which queues them, instead of being lost.
	s := p.session.Load()
	if s != nil && sid != s.LocalSessionID {
		p.drop(DropUnknownSession)
		return
	}
	if s != nil && !s.SequencedData && l2tp.IsSequencedData(msg) {
		// RFC 2661 §5.4: once the peer sequences its data, so must we.
		seq := *s
		seq.SequencedData = true
		p.session.CompareAndSwap(s, &seq)
	}
	proto, info, err := ppp.DecodeFrame(frame)
	if err != nil {
		p.drop(DropPPPMalformed)
		return
	}
	p.rxBurst.ppp.count(len(frame))
	if proto == ppp.ProtoIPv4 || proto == ppp.ProtoIPv6 {
		p.rxBurst.ip.count(len(info))
		if ip := p.ip.Load(); ip != nil && s != nil {
			if b, ok := (*ip).(IPBurstSink); ok {
				if p.held != b {
					p.flushHeld()
					p.held = b
				}
				b.EnqueueInbound(info)
			} else {
				(*ip).InjectInbound(info)
			}
		}
		return
	}
	if f := p.frames.Load(); f != nil {
		(*f).HandleFrame(clone(frame))
	}
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }

// udpChecksum computes the UDP checksum of u (header with a zero checksum
// field, then data) with the IPv4 pseudo-header (RFC 768). RFC 3948 §3.1.2:
// a transport-mode sender uses its own address, which NAT-OA announced.
func udpChecksum(src, dst [4]byte, u []byte) uint16 {
	sum := uint64(binary.BigEndian.Uint32(src[:])) + uint64(binary.BigEndian.Uint32(dst[:])) +
		protoUDP + uint64(len(u))
	b := u
	// One's-complement sums may be taken over 32-bit words and folded
	// afterwards (RFC 1071 §2(C)).
	for len(b) >= 8 {
		v := binary.BigEndian.Uint64(b)
		sum += v>>32 + v&0xffffffff
		b = b[8:]
	}
	if len(b) >= 4 {
		sum += uint64(binary.BigEndian.Uint32(b))
		b = b[4:]
	}
	if len(b) >= 2 {
		sum += uint64(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint64(b[0]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	cs := ^uint16(sum)
	if cs == 0 {
		cs = 0xffff // RFC 768: a computed zero is sent as all ones
	}
	return cs
}
