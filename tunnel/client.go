// Package tunnel drives the whole client: IKEv1 keys an ESP SA carried in
// UDP, L2TP runs inside it, PPP inside L2TP, and a gVisor stack on top of PPP.
//
// Layers and their owners:
//
//	readLoop (one goroutine)  socket -> demux: IKE -> ike.Initiator (its SA table), ESP -> Open ->
//	                          L2TP control -> l2tp.LAC, PPP control -> ppp.Client,
//	                          IPv4 -> netstack (fast path, no channel hop)
//	ike.Initiator.Run         the IKE SAs, retransmissions, DPD, Deletes, renewals
//	l2tp.LAC.Run              control connection state, reliable delivery
//	ppp.Client.Run            LCP/auth/IPCP state
//	loop                      the one event loop: brings the layers up in order, then handles
//	                          rekeys, deletes, layer deaths and NAT keepalives
//
// Every goroutine is started through the Client's supervisor: Close returns
// once none is left running, or reports the ones that did not stop.
//
// The send path is plain function calls from whichever goroutine produced the
// packet (gVisor's writer, a control-plane owner): headers are written into
// headroom in front of the payload and ESP seals in place.
package tunnel

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/l2tpproxy/l2tpproxy/netstack"
	"github.com/l2tpproxy/l2tpproxy/tunnel/clock"
	"github.com/l2tpproxy/l2tpproxy/tunnel/datapath"
	"github.com/l2tpproxy/l2tpproxy/tunnel/esp"
	"github.com/l2tpproxy/l2tpproxy/tunnel/ike"
	"github.com/l2tpproxy/l2tpproxy/tunnel/l2tp"
	"github.com/l2tpproxy/l2tpproxy/tunnel/ppp"
)

// Config describes one connection to an L2TP/IPsec server.
type Config struct {
	Server   string // host or host:port of the server's IKE port (default port 500)
	NATTPort uint16 // the server's NAT-T port (default 4500)

	PSK []byte // IPsec pre-shared key (secret)
	// Cert, if set, authenticates phase 1 with RSA signatures and
	// certificates instead of PSK (ServerName is filled from Server).
	Cert *ike.Certificates
	// CertRemoteID is the identity the server's certificate must carry
	// (--remote-id with --cert); with Cert and no CertRemoteID, the
	// certificate must name Server.
	CertRemoteID string
	User         string
	Password     []byte // PPP password (secret)

	// L2TPPort is our inner L2TP UDP port (default 1701, as Windows uses;
	// NOTES §1.6: some servers refuse other ports).
	L2TPPort uint16
	// Auth is the set of PPP authentication methods we accept (zero:
	// ppp.DefaultAuthPolicy, everything but PAP).
	Auth ppp.AuthPolicy
	// Phase1/Phase2 override the IKE proposals (nil = defaults).
	Phase1 []ike.Phase1Transform
	Phase2 []esp.Algorithm
	// Phase1Lifetime is the ISAKMP SA lifetime we offer (default 8 h); we
	// rekey it at 90%, make-before-break.
	Phase1Lifetime time.Duration
	// Phase2Lifetime is the IPsec SA lifetime we offer (default 1 h); we
	// rekey at 90%.
	Phase2Lifetime time.Duration
	// espSeqSoftLimit overrides datapath.DefaultSeqSoftLimit (tests).
	espSeqSoftLimit uint64
	// espHoldTimeout overrides datapath.HoldTimeout (tests).
	espHoldTimeout time.Duration
	// PFS is whether Quick Mode carries a Diffie-Hellman exchange (default
	// ike.PFSAuto: only if the server refuses a Quick Mode without).
	PFS ike.PFS
	// IKEMode is the phase-1 exchange (default ike.ModeMain); LocalID our
	// identity (nil: our address), RemoteID the server's, checked if set.
	IKEMode           ike.Mode
	LocalID, RemoteID *ike.Identity

	// ConnectTimeout bounds Dial as a whole (default 30 s).
	ConnectTimeout time.Duration
	// ReplyTimeout is how long Dial waits for the first reply of the server
	// before it reports the server unreachable (default 8 s).
	ReplyTimeout time.Duration
	// L2TPTimeout bounds the L2TP setup once IPsec is up (default 8 s: a
	// server that answered IKE is alive, so a silent L2TP means no L2TP
	// service, and the user should hear so quickly). PPPTimeout bounds each
	// PPP phase: LCP, authentication, IPCP (default 8 s each; SoftEther's
	// IPCP Nak alone can take ~4 s).
	L2TPTimeout, PPPTimeout time.Duration
	// KeepaliveInterval is the NAT-T keepalive period while the tunnel is
	// idle (default 20 s, what Windows uses: MS-IKEE <14>).
	KeepaliveInterval time.Duration
	// DPDInterval is how long the server may be silent (no IKE, ESP or
	// NAT-T keepalive from it) before we ask it with R-U-THERE (RFC 3706);
	// after 3 unanswered the tunnel is down with ike.ErrPeerDead (default
	// 10 s; negative disables).
	DPDInterval time.Duration
	// OuterMTU is the path MTU toward the server (default 1500); the inner
	// MTU is derived from it and the real per-layer overhead.
	OuterMTU int
	// ParallelDecrypt shares received bursts of 16+ packets on a non-AEAD
	// SA (AES-CBC + HMAC) with a second goroutine, which decrypts from the
	// far end of each burst while the socket's reader decrypts from the
	// near end and delivers in order (datapath.Path.RunCrypto). Off by
	// default: on the 2-core VM it was measured on it gave no consistent
	// gain (README "Performance"). Ignored with GOMAXPROCS 1.
	ParallelDecrypt bool
	// NoStallProbes turns off the network stack's stall probes
	// (netstack.Config.NoStallProbes), which repair a TCP upload's lost
	// retransmissions and tails without waiting for gVisor's 200 ms RTO.
	// For measuring them (BenchmarkLossy); leave it false.
	NoStallProbes bool

	Logger *slog.Logger
	Clock  clock.Clock
	Rand   io.Reader
	// Conn, if set, is the UDP socket to use instead of one Dial opens:
	// tests give an in-memory one (tunnel/memnet). Its LocalAddr is what
	// IKE announces; Close closes it.
	Conn datapath.Conn

	// Capture, if set, is called once per network stack for a writer
	// that receives the inner IP packets as pcap (netstack.Config.Capture).
	Capture func() io.Writer
}

func (c *Config) setDefaults() {
	if c.NATTPort == 0 {
		c.NATTPort = 4500
	}
	if c.L2TPPort == 0 {
		c.L2TPPort = 1701
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = 30 * time.Second
	}
	if c.ReplyTimeout == 0 {
		c.ReplyTimeout = 8 * time.Second
	}
	if c.L2TPTimeout == 0 {
		c.L2TPTimeout = 8 * time.Second
	}
	if c.PPPTimeout == 0 {
		c.PPPTimeout = 8 * time.Second
	}
	if c.KeepaliveInterval == 0 {
		c.KeepaliveInterval = 20 * time.Second
	}
	if c.OuterMTU == 0 {
		c.OuterMTU = 1500
	}
	if c.DPDInterval == 0 {
		c.DPDInterval = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Clock == nil {
		c.Clock = clock.Real
	}
	if c.Rand == nil {
		c.Rand = rand.Reader
	}
}

// Info is what the connection negotiated, for progress output.
type Info struct {
	Server     netip.AddrPort
	Local      netip.AddrPort
	IKESuite   string
	ESPSuite   string
	PFS        string // Quick Mode DH group, "" without PFS
	L2TPPeer   string
	L2TPVendor string // the server's Vendor Name AVP, "" if it sent none
	PPPAuth    string
	Address    netip.Addr
	PeerAddr   netip.Addr
	DNS        []netip.Addr
	MTU        int
	ConnectDur time.Duration
	Times      Times // per step of ConnectDur
}

// Client is an established tunnel. Its Stack dials through the VPN.
type Client struct {
	cfg    Config
	log    *slog.Logger
	conn   datapath.Conn
	server netip.Addr
	ikeTo  netip.AddrPort // server IKE address (port 500 or custom)
	nattTo netip.AddrPort // server NAT-T address
	local  netip.AddrPort
	info   Info
	watch  stopwatch // times the steps of connect into info.Times

	// ike is the initiator: its Run goroutine owns the table of IKE SAs
	// (a new one replaces an IKE SA the server deleted alone). ikeMu orders
	// its start with teardown.
	ike   atomic.Pointer[ike.Initiator]
	ikeMu sync.Mutex
	// pfs is the PFS mode for the next IKE SA: PFSOn once a server has
	// shown that it requires PFS, so a renewal does not ask twice.
	pfs   ike.PFS
	lac   *l2tp.LAC
	ppp   *ppp.Client
	data  *datapath.Path
	stack atomic.Pointer[netstack.Stack]

	ikeRun          *layerRun // replaced with c.ike, under ikeMu
	l2tpRun, pppRun layerRun

	rxKeepalives atomic.Uint64 // NAT-T keepalives from the server (DPD activity)

	gotReply  chan struct{} // closed on the first datagram from the server
	replyOnce sync.Once

	// sup owns every goroutine of the tunnel: Close returns once none is
	// left, or reports the ones that did not stop.
	sup      supervisor
	counters controlCounters // Stats

	closeOnce sync.Once
	closing   atomic.Bool // set by teardown: layers ending now are not failures
	done      chan struct{}
	closeErr  error // what teardown could not stop; set inside closeOnce
	errMu     sync.Mutex
	err       error
}

// Dial connects to the server and returns once PPP has an IP address and the
// network stack is up. On failure every layer that was started is torn down
// and the returned error is an *Error naming the layer and what to check.
func Dial(ctx context.Context, cfg Config) (*Client, error) {
	cfg.setDefaults()
	if err := validate(&cfg); err != nil {
		return nil, err
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	defer cancel()

	c, err := newClient(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := c.connect(ctx); err != nil {
		c.teardown(false)
		if werr := c.sup.Wait(time.Second); werr != nil {
			c.log.Warn("tunnel setup failed and left goroutines running", "err", werr)
		}
		return nil, err
	}
	c.info.ConnectDur = time.Since(start)
	return c, nil
}

// Validate checks cfg as Dial does before it connects (for a configuration
// check that must not touch the network): the same errors, nothing sent.
func (cfg Config) Validate() error {
	cfg.setDefaults()
	if err := validate(&cfg); err != nil {
		return err
	}
	if _, p, err := net.SplitHostPort(cfg.Server); err == nil {
		if n, err := strconv.ParseUint(p, 10, 16); err != nil || n == 0 {
			return &Error{Class: ErrConfig, Layer: "config", Err: fmt.Errorf("bad server port %q", p)}
		}
	}
	return nil
}

func validate(cfg *Config) error {
	bad := func(msg string) error {
		return &Error{Class: ErrConfig, Layer: "config", Err: errors.New(msg)}
	}
	switch {
	case cfg.Server == "":
		return bad("no server given (--server)")
	case len(cfg.PSK) == 0 && cfg.Cert == nil:
		return bad("no IPsec pre-shared key given (--psk or --psk-file), nor a certificate (--cert, --key, --ca)")
	case len(cfg.PSK) != 0 && cfg.Cert != nil:
		return bad("give either a pre-shared key (--psk) or a certificate (--cert), not both")
	case cfg.User == "":
		return bad("no user name given (--user)")
	case len(cfg.Password) == 0:
		return bad("no password given (--password or --password-file)")
	}
	return nil
}

func newClient(ctx context.Context, cfg Config) (*Client, error) {
	host, port := cfg.Server, "500"
	if h, p, err := net.SplitHostPort(cfg.Server); err == nil {
		host, port = h, p
	}
	ikePort, err := strconv.ParseUint(port, 10, 16)
	if err != nil || ikePort == 0 {
		return nil, &Error{Class: ErrConfig, Layer: "config", Err: fmt.Errorf("bad server port %q", port)}
	}
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip4", host)
	if err != nil || len(addrs) == 0 {
		return nil, &Error{Class: ErrServerUnreachable, Layer: "DNS", Err: fmt.Errorf("cannot resolve server %q: %w", host, err),
			Hint: "check the server name"}
	}
	server := addrs[0].Unmap()
	ikeTo := netip.AddrPortFrom(server, uint16(ikePort))

	conn := cfg.Conn
	if conn == nil {
		if conn, err = openSocket(cfg, ikeTo); err != nil {
			return nil, err
		}
	}
	local := conn.LocalAddr().(*net.UDPAddr).AddrPort()
	local = netip.AddrPortFrom(local.Addr().Unmap(), local.Port())

	c := &Client{
		cfg:      cfg,
		log:      cfg.Logger,
		conn:     conn,
		server:   server,
		ikeTo:    ikeTo,
		nattTo:   netip.AddrPortFrom(server, cfg.NATTPort),
		local:    local,
		gotReply: make(chan struct{}),
		done:     make(chan struct{}),
		pfs:      cfg.PFS,
	}
	c.info.Server, c.info.Local = ikeTo, local
	c.data = datapath.New(datapath.Config{
		Conn:      conn,
		Rand:      cfg.Rand,
		LocalIP:   local.Addr(),
		PeerIP:    server,
		LocalPort: cfg.L2TPPort,
		PeerPort:  1701,
		// An SA whose sequence numbers run low is rekeyed like one whose
		// lifetime runs out (the IKE Run goroutine takes the request).
		SeqLow: func(spi uint32) {
			if ini := c.ike.Load(); ini != nil {
				ini.RekeyChild(spi)
			}
		},
		SeqSoftLimit: cfg.espSeqSoftLimit,
		// So is one whose kilobyte lifetime runs low (RFC 2407 §4.5).
		BytesLow: func(spi uint32) {
			if ini := c.ike.Load(); ini != nil {
				ini.RekeyChild(spi)
			}
		},
		// No new SA came while senders were held at an exhausted one:
		// the tunnel is set up again (`up` reconnects).
		Exhausted: func(spi uint32) {
			c.fail(&Error{Class: ErrIKE, Layer: "ESP", Err: fmt.Errorf("outbound SA %08x: %w", spi, datapath.ErrSAExhausted),
				Hint: "the server did not complete a rekey in time"})
		},
		HoldTimeout: cfg.espHoldTimeout,
		Clock:       cfg.Clock,
	})
	c.data.SetPeer(c.nattTo)
	return c, nil
}

// Info returns what was negotiated.
func (c *Client) Info() Info { return c.info }

// Stack is the network stack on the VPN side: dial and resolve through it.
func (c *Client) Stack() *netstack.Stack { return c.stack.Load() }

// DialContext dials through the tunnel (names resolved by the VPN's DNS).
func (c *Client) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	return c.Stack().DialContext(ctx, network, address)
}

// LookupHost resolves a name through the VPN's DNS servers.
func (c *Client) LookupHost(ctx context.Context, host string) ([]netip.Addr, error) {
	return c.Stack().LookupHost(ctx, host)
}

// Done is closed when the tunnel has gone down (Close, or a layer failed).
func (c *Client) Done() <-chan struct{} { return c.done }

// Err tells why the tunnel went down; nil after a clean Close.
func (c *Client) Err() error {
	c.errMu.Lock()
	defer c.errMu.Unlock()
	return c.err
}

// Close tears the tunnel down in order: PPP Terminate, L2TP CDN + StopCCN,
// IKE Deletes, then closes the socket, and returns once every goroutine of
// the tunnel has ended. A layer or goroutine that did not stop in time is
// logged and returned (ErrStopTimeout). It is safe to call more than once.
func (c *Client) Close() error {
	c.teardown(true)
	err := c.closeErr
	if werr := c.sup.Wait(closeWait); werr != nil {
		c.log.Warn("tunnel goroutines still running after Close", "err", werr)
		err = errors.Join(err, werr)
	}
	return err
}

// closeWait bounds how long Close waits for the goroutines once the layers
// were stopped (the socket reader and the event loop end at once then).
const closeWait = 2 * time.Second

func (c *Client) fail(err error) {
	if c.closing.Load() {
		return
	}
	c.errMu.Lock()
	if c.err == nil {
		c.err = err
	}
	c.errMu.Unlock()
	// A server that went silent will not answer our goodbyes: do not wait
	// for them; nor can PPP's and L2TP's go out on an exhausted SA.
	graceful := !errors.Is(err, ike.ErrPeerDead) && !errors.Is(err, datapath.ErrSAExhausted)
	c.sup.Go("teardown", func() { c.teardown(graceful) })
}

// teardown stops the layers top-down, each bounded; one that does not stop
// in time is logged and kept in closeErr for Close to return.
func (c *Client) teardown(graceful bool) {
	c.closeOnce.Do(func() {
		c.closing.Store(true)
		wait := 3 * time.Second
		if !graceful {
			wait = time.Second
		}
		c.data.ReleaseHeld() // senders held at an exhausted SA give up now
		if s := c.stack.Load(); s != nil {
			s.Close()
		}
		// A server found dead cannot acknowledge PPP's Terminate-Request
		// nor L2TP's StopCCN: those layers stop at once.
		var pppWhy, l2tpWhy error
		if !graceful {
			pppWhy, l2tpWhy = ppp.ErrPeerUnreachable, l2tp.ErrPeerUnreachable
		}
		errs := []error{c.pppRun.stop(wait, pppWhy), c.l2tpRun.stop(wait, l2tpWhy)}
		c.ikeMu.Lock() // no new IKE SA starts once closing is set
		ikeRun := c.ikeRun
		c.ikeMu.Unlock()
		if ikeRun != nil {
			errs = append(errs, ikeRun.stop(wait, nil))
		}
		c.conn.Close()
		close(c.done)
		if err := errors.Join(errs...); err != nil {
			c.log.Warn("tunnel layer did not stop", "err", err)
			c.closeErr = err
		}
	})
}

func (c *Client) markReply() {
	c.replyOnce.Do(func() { close(c.gotReply) })
}

// certFor is Cert with ServerName set to the --server host, which the
// server's certificate must name when no CertRemoteID is given.
func (c *Client) certFor() *ike.Certificates {
	if c.cfg.Cert == nil {
		return nil
	}
	cert := *c.cfg.Cert
	cert.ServerName = c.cfg.Server
	if h, _, err := net.SplitHostPort(c.cfg.Server); err == nil {
		cert.ServerName = h
	}
	return &cert
}

// startIKE starts an initiator for a new IKE SA (Main Mode, then Quick
// Mode) and makes it the current one, unless the client is closing.
func (c *Client) startIKE() (*ike.Initiator, error) {
	ini, err := ike.NewInitiator(ike.Config{
		PSK:          c.cfg.PSK,
		Cert:         c.certFor(),
		CertRemoteID: c.cfg.CertRemoteID,
		LocalAddr:    c.local,
		RemoteAddr:   c.ikeTo,
		L2TPPort:     c.cfg.L2TPPort,
		Phase1:       c.cfg.Phase1,
		Phase2:       c.cfg.Phase2,
		PFS:          c.pfs,
		Mode:         c.cfg.IKEMode,
		LocalID:      c.cfg.LocalID,
		RemoteID:     c.cfg.RemoteID,
		Clock:        c.cfg.Clock,
		Logger:       c.log.With("layer", "ike"),
		Rand:         c.cfg.Rand,

		// Authenticated ESP and keepalives from the server show it alive
		// as well as IKE does (RFC 3706 §5.3: DPD only in silence).
		DPDInterval:    max(c.cfg.DPDInterval, 0),
		Phase1Lifetime: c.cfg.Phase1Lifetime,
		Phase2Lifetime: c.cfg.Phase2Lifetime,
		PeerActivity:   func() uint64 { return c.data.RxESP.Load() + c.rxKeepalives.Load() },
		// What the server sends on a new pair right after its QM3 or ours
		// is opened, although the loop installs the pair (ChildSAUp) later.
		PrepareInbound: c.data.PrepareInbound,
	}, ikeTransport{c})
	if err != nil {
		return nil, &Error{Class: ErrConfig, Layer: "IKE", Err: err}
	}
	c.ikeMu.Lock()
	defer c.ikeMu.Unlock()
	if c.closing.Load() {
		return nil, ErrClosed
	}
	c.ike.Store(ini)
	c.ikeRun = new(layerRun)
	c.ikeRun.start(&c.sup, "IKE", ini.Run)
	return ini, nil
}
