package netstack

import (
	"errors"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// Software TCP segmentation offload.
//
// The link endpoint declares host GSO support (see linkEndpoint.SupportedGSO),
// so gVisor's TCP sender builds one large segment of up to gsoMaxSize bytes
// instead of one segment per MSS, and hands it to WritePackets with
// GSOOptions.Type == GSOTCPv4. The endpoint then cuts it into MSS-sized
// IPv4/TCP packets itself, straight into the pooled out buffers — the same
// job a NIC does for TSO (and Linux's software GSO, skb_segment). It saves
// gVisor's per-segment send path (header building, a PacketBuffer per
// segment, route and IP layer traversal), which dominated the upload profile.
//
// Per segment, as Linux's tcp_gso_segment does: the IPv4 total length and
// header checksum are rewritten and the ID incremented (RFC 6864 §4.1 lets an
// atomic datagram carry any ID; incrementing keeps them distinct anyway), the
// TCP sequence number advances by the payload already sent, PSH and FIN stay
// only on the last segment and CWR only on the first (RFC 3168 §6.1.2: CWR is
// set on the first new data after the window reduction), and the TCP checksum
// is computed over the pseudo-header and the segment. gVisor leaves only the
// pseudo-header sum in the checksum field of a GSO segment (NeedsCsum), so
// even a segment that needs no cutting must get its checksum here.

// gsoMaxSize is the largest segment gVisor may hand to WritePackets (the
// IPv4 total-length field bounds it). gVisor keeps the TCP payload below
// gsoMaxSize - header.TCPTotalHeaderMaximumSize, so the whole IPv4 packet
// fits in 65535 bytes.
const gsoMaxSize = 1 << 16

// errBadGSOSegment means a GSO packet from the stack was not a well-formed
// IPv4/TCP packet (never expected: gVisor built it).
var errBadGSOSegment = errors.New("netstack: malformed GSO segment")

// maxTCP4HeaderLen is the largest IPv4 + TCP header: 60 + 60 bytes.
const maxTCP4HeaderLen = header.IPv4MaximumHeaderSize + header.TCPHeaderMaximumSize

// tcp4Segmenter cuts one large IPv4/TCP packet, given as the slices of a
// PacketBuffer, into packets of at most hdrLen+mss bytes.
type tcp4Segmenter struct {
	hdr     [maxTCP4HeaderLen]byte // the IPv4 and TCP headers of the input
	ipHL    int                    // IPv4 header length
	hdrLen  int                    // IPv4 + TCP header length
	mss     int                    // payload bytes per segment (last may be less)
	left    int                    // payload bytes not yet emitted
	seq     uint32                 // sequence number of the next segment
	id      uint16                 // IPv4 ID of the next segment
	first   bool                   // the next segment is the first
	flags   header.TCPFlags        // flags of the input
	pseudo  uint16                 // pseudo-header sum without the length
	src     [][]byte               // remaining payload
	srcOff  int                    // offset into src[0]
	nextLen int                    // length of the next segment (0 when done)
}

// init prepares to cut the packet whose bytes are the concatenation of src
// into segments of at most mss payload bytes and at most mtu bytes in all.
// src must not change until the last call to next.
func (g *tcp4Segmenter) init(src [][]byte, mss, mtu int) error {
	*g = tcp4Segmenter{src: src, first: true}
	total := 0
	for _, s := range src {
		total += len(s)
	}
	// Headers may straddle slices: copy the fixed parts first, then the
	// options once the lengths are known.
	if total < header.IPv4MinimumSize || g.read(g.hdr[:header.IPv4MinimumSize]) != header.IPv4MinimumSize {
		return errBadGSOSegment
	}
	ip := header.IPv4(g.hdr[:header.IPv4MinimumSize])
	g.ipHL = int(ip.HeaderLength())
	if header.IPVersion(g.hdr[:]) != header.IPv4Version || g.ipHL < header.IPv4MinimumSize ||
		ip.Protocol() != uint8(header.TCPProtocolNumber) || int(ip.TotalLength()) != total ||
		ip.More() || ip.FragmentOffset() != 0 || total < g.ipHL+header.TCPMinimumSize {
		return errBadGSOSegment
	}
	end := g.ipHL + header.TCPMinimumSize
	if g.read(g.hdr[header.IPv4MinimumSize:end]) != end-header.IPv4MinimumSize {
		return errBadGSOSegment
	}
	tcp := header.TCP(g.hdr[g.ipHL:end])
	g.hdrLen = g.ipHL + int(tcp.DataOffset())
	if int(tcp.DataOffset()) < header.TCPMinimumSize || g.hdrLen > total {
		return errBadGSOSegment
	}
	if g.read(g.hdr[end:g.hdrLen]) != g.hdrLen-end {
		return errBadGSOSegment
	}
	mss = min(mss, mtu-g.hdrLen)
	if mss <= 0 {
		return errBadGSOSegment
	}
	ip = header.IPv4(g.hdr[:g.ipHL])
	tcp = header.TCP(g.hdr[g.ipHL:g.hdrLen])
	g.mss = mss
	g.left = total - g.hdrLen
	g.seq = tcp.SequenceNumber()
	g.id = ip.ID()
	g.flags = tcp.Flags()
	g.pseudo = header.PseudoHeaderChecksum(header.TCPProtocolNumber, ip.SourceAddress(), ip.DestinationAddress(), 0)
	g.nextLen = g.hdrLen + min(g.left, mss)
	return nil
}

// read copies the next len(dst) bytes of src into dst and returns how many
// it copied (fewer only at the end of src).
func (g *tcp4Segmenter) read(dst []byte) int {
	n := 0
	for n < len(dst) && len(g.src) > 0 {
		c := copy(dst[n:], g.src[0][g.srcOff:])
		n += c
		g.srcOff += c
		if g.srcOff == len(g.src[0]) {
			g.src, g.srcOff = g.src[1:], 0
		}
	}
	return n
}

// next writes the next segment into dst, which must hold at least
// hdrLen+mss bytes, and returns its length; 0 once every segment has been
// written. A packet without payload (a pure ACK) yields one segment.
func (g *tcp4Segmenter) next(dst []byte) int {
	n := g.nextLen
	if n == 0 {
		return 0
	}
	payload := n - g.hdrLen
	last := payload == g.left
	seg := dst[:n]
	copy(seg, g.hdr[:g.hdrLen])
	if g.read(seg[g.hdrLen:]) != payload {
		// Cannot happen: init checked the total length.
		g.nextLen = 0
		return 0
	}

	ip := header.IPv4(seg[:g.ipHL])
	ip.SetTotalLength(uint16(n))
	ip.SetID(g.id)
	ip.SetChecksum(0)
	ip.SetChecksum(^checksum.Checksum(seg[:g.ipHL], 0))

	tcp := header.TCP(seg[g.ipHL:])
	tcp.SetSequenceNumber(g.seq)
	flags := g.flags
	if !last {
		flags &^= header.TCPFlagPsh | header.TCPFlagFin
	}
	if !g.first {
		flags &^= header.TCPFlagCwr
	}
	tcp.SetFlags(uint8(flags))
	tcp.SetChecksum(0)
	l4 := uint16(n - g.ipHL)
	sum := checksum.Combine(g.pseudo, l4)
	tcp.SetChecksum(^checksum.Checksum(seg[g.ipHL:], sum))

	g.first = false
	g.left -= payload
	g.seq += uint32(payload)
	g.id++
	if last {
		g.nextLen = 0
	} else {
		g.nextLen = g.hdrLen + min(g.left, g.mss)
	}
	return n
}
