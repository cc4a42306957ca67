//go:build linux

package datapath

import (
	"cmp"
	"encoding/binary"
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Linux batch I/O: recvmmsg/sendmmsg on the socket's raw descriptor, with
// UDP generic segmentation offload (UDP_SEGMENT, Linux 4.18) on send and
// generic receive offload (UDP_GRO, Linux 5.0) on receive. The design follows
// wireguard-go's conn/bind_std.go and tailscale's batching UDP conn: group
// equal-size datagrams for one destination into a single GSO send, split
// GRO-coalesced reads back into datagrams, and drop back to one datagram per
// message when the kernel refuses offload.
//
// All per-call state (message headers, iovecs, control buffers, the closures
// handed to syscall.RawConn) is allocated once, so the hot path does not
// allocate.

const (
	// maxGSOSegments bounds the datagrams of one UDP_SEGMENT send
	// (UDP_MAX_SEGMENTS is 64 before Linux 6.?, 128 after).
	maxGSOSegments = 64
	// maxGSOBytes bounds the payload of one GSO send: an IPv4 UDP datagram
	// carries at most 65535-20-8 bytes.
	maxGSOBytes = 65535 - 20 - udpHeaderLen
	// solUDP is the socket level of UDP options (IPPROTO_UDP).
	solUDP = unix.IPPROTO_UDP
)

// Receiver reads datagrams from a UDP socket many at a time (recvmmsg), and
// with UDP_GRO many datagrams per message. It is used by one goroutine.
type Receiver struct {
	conn  Conn
	rc    syscall.RawConn
	bufs  [][]byte
	hdrs  []unix.Mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6 // big enough for either family
	oob   []byte                  // batch × oobLen
	gro   bool

	n      int
	err    error
	readFn func(fd uintptr) bool
}

const oobLen = 64 // room for a UDP_GRO cmsg (an int) and then some

// NewReceiver prepares batched reads of up to batch messages from conn. It
// enables UDP_GRO when the kernel supports it.
func NewReceiver(conn Conn, batch int) *Receiver {
	batch = max(batch, 1)
	r := &Receiver{
		conn:  conn,
		bufs:  make([][]byte, batch),
		hdrs:  make([]unix.Mmsghdr, batch),
		iovs:  make([]unix.Iovec, batch),
		names: make([]unix.RawSockaddrInet6, batch),
		oob:   make([]byte, batch*oobLen),
	}
	// With GRO a message holds up to 64 KiB of coalesced datagrams; the
	// buffers must hold a maximal datagram either way.
	for i := range r.bufs {
		r.bufs[i] = make([]byte, maxDatagram)
		r.iovs[i].Base = &r.bufs[i][0]
		r.hdrs[i].Hdr.Iov = &r.iovs[i]
		r.hdrs[i].Hdr.SetIovlen(1)
		r.hdrs[i].Hdr.Name = (*byte)(unsafe.Pointer(&r.names[i]))
		r.hdrs[i].Hdr.Control = &r.oob[i*oobLen]
	}
	if uc, ok := conn.(*net.UDPConn); !ok {
		// not a socket: one datagram per Read
	} else if rc, err := uc.SyscallConn(); err == nil {
		r.rc = rc
		rc.Control(func(fd uintptr) {
			r.gro = unix.SetsockoptInt(int(fd), solUDP, unix.UDP_GRO, 1) == nil
		})
	}
	r.readFn = r.recvmmsg
	return r
}

func (r *Receiver) recvmmsg(fd uintptr) bool {
	for i := range r.hdrs {
		h := &r.hdrs[i]
		r.iovs[i].SetLen(len(r.bufs[i]))
		h.Hdr.Namelen = uint32(unsafe.Sizeof(r.names[i]))
		h.Hdr.SetControllen(oobLen)
		h.Hdr.Flags = 0
		h.Len = 0
	}
	var n uintptr
	errno := unix.EINTR
	for errno == unix.EINTR {
		n, _, errno = unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&r.hdrs[0])),
			uintptr(len(r.hdrs)), 0, 0, 0)
	}
	if errno == unix.EAGAIN {
		return false // nothing queued: wait for the poller
	}
	r.n, r.err = int(n), nil
	if errno != 0 {
		r.n, r.err = 0, errno
	}
	return true
}

// Read waits for at least one datagram, then calls fn for every datagram it
// got, in arrival order. dg is valid until the next Read.
func (r *Receiver) Read(fn func(dg []byte, from netip.AddrPort)) error {
	if r.rc == nil { // no raw descriptor: one datagram per call
		n, from, err := r.conn.ReadFromUDPAddrPort(r.bufs[0])
		if err != nil {
			return err
		}
		fn(r.bufs[0][:n], netip.AddrPortFrom(from.Addr().Unmap(), from.Port()))
		return nil
	}
	if err := r.rc.Read(r.readFn); err != nil {
		return err // net.ErrClosed once the socket is closed
	}
	if r.err != nil {
		return r.err
	}
	for i := range r.n {
		h := &r.hdrs[i]
		from := sockaddrToAddrPort(&r.names[i], h.Hdr.Namelen)
		data := r.bufs[i][:h.Len]
		seg := 0
		if r.gro {
			seg = groSegment(r.oob[i*oobLen : i*oobLen+int(h.Hdr.Controllen)])
		}
		if seg <= 0 || seg >= len(data) {
			fn(data, from)
			continue
		}
		// GRO: equal-size datagrams back to back, the last may be shorter.
		for len(data) > 0 {
			k := min(seg, len(data))
			fn(data[:k:k], from)
			data = data[k:]
		}
	}
	return nil
}

// groSegment returns the UDP_GRO segment size in a control buffer, or 0.
func groSegment(oob []byte) int {
	for len(oob) >= unix.SizeofCmsghdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		l := int(h.Len)
		if l < unix.SizeofCmsghdr || l > len(oob) {
			return 0
		}
		if h.Level == solUDP && h.Type == unix.UDP_GRO && l >= unix.CmsgLen(4) {
			return int(*(*int32)(unsafe.Pointer(&oob[unix.CmsgLen(0)])))
		}
		next := unix.CmsgSpace(l - unix.CmsgLen(0))
		if next > len(oob) {
			return 0
		}
		oob = oob[next:]
	}
	return 0
}

func sockaddrToAddrPort(sa *unix.RawSockaddrInet6, n uint32) netip.AddrPort {
	port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:])
	switch sa.Family {
	case unix.AF_INET:
		if n < unix.SizeofSockaddrInet4 {
			return netip.AddrPort{}
		}
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), port)
	case unix.AF_INET6:
		if n < unix.SizeofSockaddrInet6 {
			return netip.AddrPort{}
		}
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), port)
	}
	return netip.AddrPort{}
}

// sender writes datagrams many at a time (sendmmsg), coalescing runs of
// equal-size datagrams into UDP_SEGMENT sends. Callers serialise.
type sender struct {
	rc   syscall.RawConn
	gso  atomic.Bool
	hdrs []unix.Mmsghdr
	iovs []unix.Iovec
	oob  []byte // one UDP_SEGMENT cmsg per message
	name unix.RawSockaddrInet6
	nlen uint32

	// state of the write in progress, for writeFn
	msgs, done int
	err        error // first datagram that could not be sent
	gsoErr     error // a GSO send failed: the kernel cannot segment
	writeFn    func(fd uintptr) bool
}

var segCmsgSpace = unix.CmsgSpace(2)

func newSender(conn Conn, gso bool) *sender {
	s := &sender{}
	uc, ok := conn.(*net.UDPConn)
	if !ok || uc == nil {
		return s // not a socket: Path writes one datagram at a time
	}
	rc, err := uc.SyscallConn()
	if err != nil {
		return s
	}
	s.rc = rc
	rc.Control(func(fd uintptr) {
		// The option exists (the kernel can segment) if we can read it.
		_, err := unix.GetsockoptInt(int(fd), solUDP, unix.UDP_SEGMENT)
		s.gso.Store(gso && err == nil)
	})
	s.writeFn = s.sendmmsg
	return s
}

func (s *sender) ok() bool { return s.rc != nil }

func (s *sender) setDest(to netip.AddrPort) {
	s.name = unix.RawSockaddrInet6{}
	port := (*[2]byte)(unsafe.Pointer(&s.name.Port))[:]
	binary.BigEndian.PutUint16(port, to.Port())
	if a := to.Addr(); a.Is4() || a.Is4In6() {
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(&s.name))
		sa4.Family = unix.AF_INET
		sa4.Addr = a.Unmap().As4()
		s.nlen = unix.SizeofSockaddrInet4
	} else {
		s.name.Family = unix.AF_INET6
		s.name.Addr = a.As16()
		s.nlen = unix.SizeofSockaddrInet6
	}
}

// build fills the message headers for pkts: with GSO, each run of
// datagrams of one size (the last of a run may be shorter) is one message.
func (s *sender) build(pkts [][]byte, gso bool) {
	if cap(s.iovs) < len(pkts) {
		s.iovs = make([]unix.Iovec, len(pkts))
		s.hdrs = make([]unix.Mmsghdr, len(pkts))
		s.oob = make([]byte, len(pkts)*segCmsgSpace)
	}
	iovs, hdrs := s.iovs[:len(pkts)], s.hdrs[:len(pkts)]
	m := 0
	for i := 0; i < len(pkts); {
		size := len(pkts[i])
		j, total := i+1, size
		if gso {
			for j < len(pkts) && j-i < maxGSOSegments && len(pkts[j]) <= size &&
				total+len(pkts[j]) <= maxGSOBytes {
				total += len(pkts[j])
				j++
				if len(pkts[j-1]) < size {
					break // a shorter datagram ends the run
				}
			}
		}
		for k := i; k < j; k++ {
			iovs[k].Base = unsafe.SliceData(pkts[k])
			iovs[k].SetLen(len(pkts[k]))
		}
		h := &hdrs[m]
		*h = unix.Mmsghdr{}
		h.Hdr.Name = (*byte)(unsafe.Pointer(&s.name))
		h.Hdr.Namelen = s.nlen
		h.Hdr.Iov = &iovs[i]
		h.Hdr.SetIovlen(j - i)
		if j-i > 1 {
			oob := s.oob[m*segCmsgSpace : (m+1)*segCmsgSpace]
			clear(oob)
			c := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
			c.Level, c.Type = solUDP, unix.UDP_SEGMENT
			c.SetLen(unix.CmsgLen(2))
			*(*uint16)(unsafe.Pointer(&oob[unix.CmsgLen(0)])) = uint16(size)
			h.Hdr.Control = &oob[0]
			h.Hdr.SetControllen(len(oob))
		}
		m++
		i = j
	}
	s.msgs, s.done = m, 0
}

func (s *sender) sendmmsg(fd uintptr) bool {
	for s.done < s.msgs {
		n, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&s.hdrs[s.done])),
			uintptr(s.msgs-s.done), 0, 0, 0)
		switch errno {
		case 0:
			s.done += int(n)
		case unix.EAGAIN:
			return false // socket buffer full: wait for the poller (back-pressure)
		case unix.EINTR:
		case unix.EIO, unix.EINVAL:
			if s.hdrs[s.done].Hdr.Iovlen > 1 {
				s.gsoErr = errno // let write retry without GSO
				return true
			}
			fallthrough
		default:
			// This datagram cannot be sent (say, EMSGSIZE): report
			// it, but do not let it take the rest of the batch along.
			if s.err == nil {
				s.err = errno
			}
			s.done++
		}
	}
	return true
}

// write sends pkts (sealed ESP datagrams) to to.
func (s *sender) write(pkts [][]byte, to netip.AddrPort) error {
	s.setDest(to)
	gso := s.gso.Load()
	s.err = nil
	for {
		s.build(pkts, gso)
		s.gsoErr = nil
		if err := s.rc.Write(s.writeFn); err != nil {
			return err
		}
		if s.gsoErr == nil {
			return s.err
		}
		// Like wireguard-go: EIO means the device cannot segment (e.g.
		// checksum offload off); turn GSO off for good and resend what is
		// left one datagram per message.
		s.gso.Store(false)
		gso = false
		sent := 0
		for _, h := range s.hdrs[:s.done] {
			sent += int(h.Hdr.Iovlen)
		}
		pkts = pkts[sent:]
	}
}

// SetReceiveBuffer asks for a socket receive buffer of size bytes and
// returns the size the kernel granted (as SO_RCVBUF reads it back: Linux
// doubles the request to account for its own overhead, socket(7)).
// SO_RCVBUFFORCE (CAP_NET_ADMIN) may exceed net.core.rmem_max; without the
// capability it fails and SO_RCVBUF is used, which the kernel caps at
// rmem_max. A burst of datagrams larger than the buffer is dropped by the
// kernel (Udp RcvbufErrors in /proc/net/snmp) before we can read it.
func SetReceiveBuffer(conn *net.UDPConn, size int) (int, error) {
	rc, err := conn.SyscallConn()
	if err != nil {
		return 0, err
	}
	var got int
	var serr error
	err = rc.Control(func(fd uintptr) {
		if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size) != nil {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, size)
		}
		got, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF)
	})
	return got, cmp.Or(err, serr)
}
