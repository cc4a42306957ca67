package l2tp

import (
	"crypto/rand"
	"io"
	"log/slog"
	"time"

	"github.com/l2tpproxy/l2tpproxy/tunnel/clock"
)

// Transport carries control packets to the peer.
type Transport interface {
	// WriteL2TP sends one complete L2TP packet (the inner UDP payload; the
	// caller adds UDP/ESP). The callee must not retain pkt after returning.
	WriteL2TP(pkt []byte) error
}

// Config configures a LAC or LNS. Zero values select the defaults.
type Config struct {
	HostName      string        // Host Name AVP; default "l2tpproxy"
	VendorName    string        // Vendor Name AVP; default "l2tpproxy"
	RecvWindow    uint16        // our Receive Window Size AVP; default 8
	HelloInterval time.Duration // send HELLO after this much silence (default 60s)
	RetryInitial  time.Duration // first retransmission timeout; default 1s, doubling, capped at 8s
	// FirstSCCRQTimeout, if set below RetryInitial, is how long the LAC's
	// first SCCRQ waits for an answer before a new SCCRQ goes out (it does
	// not count against MaxRetries; RetryInitial's schedule follows). The
	// first SCCRQ leaves right behind QM3 and is lost whenever it reaches
	// a server before the server has installed the IPsec SA, so a timeout
	// from the measured round trip resends it at once instead of after 1 s.
	FirstSCCRQTimeout time.Duration
	MaxRetries        int // retransmissions before ErrTimeout; default 5
	// PeerActivity, if set, counts packets received from the peer outside
	// the control channel (the data path bypasses the engine). While it
	// grows, the peer is alive: no HELLO is needed after silence on the
	// control channel, and an unacknowledged message is retransmitted
	// without giving up (a loaded server's control channel can be lossy
	// while data still flows; RFC 2661 §5.5 keepalives only matter when
	// nothing else shows the peer is there).
	PeerActivity func() uint64
	Clock        clock.Clock  // default clock.Real
	Logger       *slog.Logger // default: discard
	Rand         io.Reader    // source of tunnel/session IDs; default crypto/rand
}

// Defaults (RFC 2661 §5.8 recommends a retransmission cap of at least 8 s).
const (
	defaultName          = "l2tpproxy"
	defaultRecvWindow    = 8
	defaultHelloInterval = 60 * time.Second
	defaultRetryInitial  = time.Second
	maxRetryInterval     = 8 * time.Second
	defaultMaxRetries    = 5
	// closeWait bounds how long teardown waits for the peer to acknowledge
	// CDN/StopCCN (RFC 2661 §5.7 asks for longer; we are going away anyway).
	closeWait = 2 * time.Second
	// peerDefaultWindow applies when the peer sends no Receive Window Size
	// AVP (RFC 2661 §4.4.3).
	peerDefaultWindow = 4
	inQueueLen        = 64
	eventQueueLen     = 8
)

func (c Config) withDefaults() Config {
	if c.HostName == "" {
		c.HostName = defaultName
	}
	if c.VendorName == "" {
		c.VendorName = defaultName
	}
	if c.RecvWindow == 0 {
		c.RecvWindow = defaultRecvWindow
	}
	if c.HelloInterval <= 0 {
		c.HelloInterval = defaultHelloInterval
	}
	if c.RetryInitial <= 0 {
		c.RetryInitial = defaultRetryInitial
	}
	if c.MaxRetries <= 0 {
		c.MaxRetries = defaultMaxRetries
	}
	if c.Clock == nil {
		c.Clock = clock.Real
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Rand == nil {
		c.Rand = rand.Reader
	}
	return c
}

// Session describes an established L2TP session. Local IDs are ours (the
// peer puts them in the headers it sends); peer IDs go into the headers we
// send (PutDataHeader).
type Session struct {
	LocalTunnelID, PeerTunnelID   uint16
	LocalSessionID, PeerSessionID uint16
	PeerHostName, PeerVendor      string
	// SequencedData: the peer sent data with S=1 (or, for the LNS, the LAC
	// sent the Sequencing Required AVP): we must sequence our data too
	// (RFC 2661 §5.4). The LAC learns this only from data packets: check
	// IsSequencedData on received data.
	SequencedData bool
}

// Event is something the control connection reports on Events().
type Event interface{ l2tpEvent() }

// TunnelUp: the control connection is established (SCCCN sent by the LAC /
// received by the LNS).
type TunnelUp struct {
	PeerTunnelID             uint16
	PeerHostName, PeerVendor string
}

// SessionUp: the session is established (the LAC sent ICCN / the LNS
// received ICCN). Data may flow.
type SessionUp struct{ Session Session }

func (TunnelUp) l2tpEvent()  {}
func (SessionUp) l2tpEvent() {}
