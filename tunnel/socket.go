// The client's UDP socket: its one reader, and the IKE and L2TP transports
// that write through it.

package tunnel

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"runtime"

	"github.com/l2tpproxy/l2tpproxy/tunnel/datapath"
	"github.com/l2tpproxy/l2tpproxy/tunnel/esp"
)

// openSocket opens the client's UDP socket toward the server.
func openSocket(cfg Config, ikeTo netip.AddrPort) (*net.UDPConn, error) {
	// The address our kernel uses toward the server is what we put in IDii,
	// IDci and NAT-OA (NOTES §1.6, RFC 3947 §5.2).
	probe, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(ikeTo))
	if err != nil {
		return nil, &Error{Class: ErrServerUnreachable, Layer: "network", Err: err, Hint: "no route to the server"}
	}
	localIP := probe.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
	probe.Close()

	// One socket for IKE on 500, IKE on 4500 and ESP-in-UDP: RFC 3948 §2.1
	// requires ESP to use the ports IKE used. An ephemeral port, since an
	// unprivileged process cannot bind 500/4500.
	conn, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(localIP, 0)))
	if err != nil {
		return nil, &Error{Class: ErrServerUnreachable, Layer: "network", Err: err}
	}
	// A download arrives as one burst after another; a buffer that
	// overflows drops datagrams before we read them, and TCP then waits
	// for its loss recovery. 8 MiB is ~25 ms at 300 MiB/s.
	rcvbuf, rerr := datapath.SetReceiveBuffer(conn, rcvBufSize)
	// Linux reports twice what it grants to data (socket(7)); below the
	// request, net.core.rmem_max capped it (no CAP_NET_ADMIN).
	cfg.Logger.Debug("socket receive buffer", "requested", rcvBufSize, "granted", rcvbuf, "err", rerr)
	_ = conn.SetWriteBuffer(4 << 20)
	return conn, nil
}

// ikeTransport sends IKE messages from the shared socket.
type ikeTransport struct{ c *Client }

func (t ikeTransport) WriteIKE(msg []byte, natt bool) error {
	if !natt {
		return t.c.data.WriteTo(msg, t.c.ikeTo)
	}
	// RFC 3948 §2.2: IKE on the NAT-T port carries a 4-byte zero marker.
	b := make([]byte, esp.NonESPMarkerLen+len(msg))
	copy(b[esp.NonESPMarkerLen:], msg)
	return t.c.data.WriteTo(b, t.c.nattTo)
}

// l2tpTransport sends L2TP control packets through ESP.
type l2tpTransport struct{ c *Client }

func (t l2tpTransport) WriteL2TP(pkt []byte) error { return t.c.data.SendL2TP(pkt) }

// readLoop is the only reader of the socket. It reads in batches
// (recvmmsg, and UDP GRO on Linux), demultiplexes each datagram and queues
// ESP, then opens and delivers the burst's ESP datagrams in order (Flush;
// with Config.ParallelDecrypt on two cores, with the crypto worker, which
// it starts and stops).
func (c *Client) readLoop() {
	if c.cfg.ParallelDecrypt && runtime.GOMAXPROCS(0) > 1 {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel() // the worker ends with the reader
		c.sup.Go("crypto worker", func() { c.data.RunCrypto(ctx) })
	}
	rx := datapath.NewReceiver(c.conn, rxBatch)
	handle := c.handleDatagram
	for {
		err := rx.Read(handle)
		c.data.Flush() // the end of a burst: open it, hand held segments to the stack
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // e.g. an ICMP error surfaced by the kernel; timers handle loss
		}
	}
}

// rcvBufSize is the socket receive buffer asked for (SetReceiveBuffer).
const rcvBufSize = 8 << 20

// rxBatch is how many messages one read may return.
const rxBatch = 64

// handleDatagram demultiplexes per RFC 3948 §2: from the IKE port, plain
// ISAKMP; on the NAT-T port, 0xFF is a keepalive, a zero marker precedes
// ISAKMP, anything else is ESP. dg is valid until the next Read: ESP is
// queued and opened in place by Flush, the rest is copied.
func (c *Client) handleDatagram(dg []byte, from netip.AddrPort) {
	if from.Addr() != c.server {
		return
	}
	c.markReply()
	if from.Port() == c.ikeTo.Port() && c.ikeTo.Port() != c.nattTo.Port() {
		c.ike.Load().HandlePacket(append([]byte(nil), dg...))
		return
	}
	switch esp.Classify(dg) {
	case esp.KindIKE:
		c.ike.Load().HandlePacket(append([]byte(nil), dg[esp.NonESPMarkerLen:]...))
	case esp.KindESP:
		c.data.Queue(dg)
	case esp.KindKeepalive:
		c.rxKeepalives.Add(1)
	}
}
