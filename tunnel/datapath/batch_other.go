//go:build !linux

package datapath

import (
	"net"
	"net/netip"
)

// Receiver reads datagrams from a UDP socket. Without recvmmsg it reads one
// datagram per call. It is used by one goroutine.
type Receiver struct {
	conn Conn
	buf  []byte
}

// NewReceiver prepares reads from conn (batch is ignored on this platform).
func NewReceiver(conn Conn, batch int) *Receiver {
	return &Receiver{conn: conn, buf: make([]byte, maxDatagram)}
}

// Read waits for a datagram and calls fn with it. dg is valid until the
// next Read.
func (r *Receiver) Read(fn func(dg []byte, from netip.AddrPort)) error {
	n, from, err := r.conn.ReadFromUDPAddrPort(r.buf)
	if err != nil {
		return err
	}
	fn(r.buf[:n], netip.AddrPortFrom(from.Addr().Unmap(), from.Port()))
	return nil
}

// sender writes one datagram per system call on this platform.
type sender struct{ conn Conn }

func newSender(conn Conn, _ bool) *sender { return &sender{conn: conn} }

func (s *sender) ok() bool { return s.conn != nil }

func (s *sender) write(pkts [][]byte, to netip.AddrPort) error {
	for _, p := range pkts {
		if _, err := s.conn.WriteToUDPAddrPort(p, to); err != nil {
			return err
		}
	}
	return nil
}

// SetReceiveBuffer asks for a socket receive buffer of size bytes and
// returns the size the system reports.
func SetReceiveBuffer(conn *net.UDPConn, size int) (int, error) {
	if err := conn.SetReadBuffer(size); err != nil {
		return 0, err
	}
	return size, nil
}
