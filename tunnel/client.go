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
	"math"
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
	})
	c.data.SetPeer(c.nattTo)
	return c, nil
}

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
	// for them.
	graceful := !errors.Is(err, ike.ErrPeerDead)
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

// connect starts IKE, the socket reader and the event loop, and waits for
// the loop to bring every layer up (nil) or to fail (the setup error).
func (c *Client) connect(ctx context.Context) error {
	c.watch.start()
	ini, err := c.startIKE()
	if err != nil {
		return err
	}
	c.sup.Go("socket reader", c.readLoop)
	up := make(chan error, 1)
	c.sup.Go("event loop", func() { c.loop(ctx, ini, up) })
	return <-up
}

// setupPhase is how far the tunnel has come up.
type setupPhase int

const (
	phaseIKE  setupPhase = iota // Main Mode and Quick Mode: no ESP SA yet
	phaseL2TP                   // ESP up, waiting for the L2TP tunnel and session
	phasePPP                    // L2TP session up: LCP, authentication, IPCP
	phaseUp                     // netstack up: Dial has returned
)

// loop is the tunnel's one event loop, from the first IKE message to the
// end: it brings the layers up one after the other (IKE, L2TP, PPP,
// netstack; each phase bounded by its timer and by ctx) and then handles
// what they report (rekeys, deletes, a layer ending) and NAT keepalives.
// IKE events are handled in every phase, so a rekey during setup is
// installed at once. up gets the setup's result exactly once.
func (c *Client) loop(ctx context.Context, ini *ike.Initiator, up chan<- error) {
	log := c.log
	phase := phaseIKE
	setupDone := ctx.Done() // nil once up: ctx is Dial's and ends with it
	// One timer per phase: in phaseIKE the time to the server's first
	// reply (then only ctx bounds it), then L2TP's, then each PPP step's.
	timer := time.NewTimer(c.cfg.ReplyTimeout)
	defer timer.Stop()
	gotReply := c.gotReply // nil once seen, so the closed channel stops firing
	var keepalive clock.Timer
	var keepaliveC <-chan time.Time
	defer func() {
		if keepalive != nil {
			keepalive.Stop()
		}
	}()
	// Every layer's events are drained in every phase: their owners block
	// (IKE) or drop (others) when nobody reads. A closed channel is set to nil.
	var lacEv <-chan l2tp.Event
	var pppEv <-chan ppp.Event
	tunnelUp, linkUp, authed := false, false, false
	var ip6 *ppp.IPv6Up // IPv6CP opened before IPCP

	// fail ends the loop: during setup Dial returns err (and tears down),
	// afterwards the tunnel goes down with it.
	fail := func(err error) {
		if phase < phaseUp {
			up <- err
			return
		}
		c.fail(err)
	}
	for {
		var err error
		select {
		case ev := <-ini.Events():
			if phase == phaseIKE {
				err = c.onIKESetup(ev, &phase, timer)
				if err == nil && phase == phaseL2TP {
					lacEv = c.lac.Events()
				}
			} else {
				c.onIKEEvent(ev)
			}
		case <-gotReply:
			gotReply = nil
			if phase == phaseIKE {
				timer.Stop()
			}
		case <-timer.C:
			err = c.setupTimeout(phase, tunnelUp, linkUp, authed)
		case ev, ok := <-lacEv:
			if !ok {
				lacEv = nil
				break
			}
			if phase != phaseL2TP {
				break
			}
			switch ev := ev.(type) {
			case l2tp.TunnelUp:
				tunnelUp = true
				c.info.L2TPPeer, c.info.L2TPVendor = ev.PeerHostName, ev.PeerVendor
				log.Info("L2TP tunnel established", "peer", ev.PeerHostName, "vendor", ev.PeerVendor, "tunnel", ev.PeerTunnelID)
			case l2tp.SessionUp:
				s := ev.Session
				c.data.SetSession(s)
				c.info.Times.L2TP = c.watch.lap()
				log.Info("L2TP session established", "session", s.PeerSessionID)
				c.pppRun.start(&c.sup, "PPP", c.ppp.Run)
				pppEv = c.ppp.Events()
				phase = phasePPP
				timer.Reset(c.cfg.PPPTimeout)
			}
		case ev, ok := <-pppEv:
			if !ok {
				pppEv = nil
				break
			}
			if _, is := ev.(ppp.IPv6Down); is { // IPv6CP closed after it had opened
				ip6 = nil
				c.ipv6Down()
				break
			}
			if v6, is := ev.(ppp.IPv6Up); is { // IPv6CP opened: before IPCP, or any time after
				if c.stack.Load() != nil {
					c.ipv6Up(v6)
				} else {
					ip6 = &v6
				}
				break
			}
			if phase != phasePPP {
				break
			}
			switch ev := ev.(type) {
			case ppp.LinkUp:
				linkUp = true
				c.info.Times.LCP = c.watch.lap()
				timer.Reset(c.cfg.PPPTimeout)
			case ppp.AuthUp:
				authed = true
				timer.Reset(c.cfg.PPPTimeout)
				c.info.PPPAuth = ev.Method.String()
				c.info.Times.Auth = c.watch.lap()
				log.Info("PPP authenticated", "method", ev.Method.String())
			case ppp.IPUp:
				c.info.Times.IPCP = c.watch.lap()
				if err = c.startStack(ev); err == nil {
					timer.Stop()
					phase, setupDone = phaseUp, nil
					keepalive = c.cfg.Clock.NewTimer(c.cfg.KeepaliveInterval)
					keepaliveC = keepalive.C()
					if ip6 != nil {
						c.ipv6Up(*ip6)
					}
					up <- nil
				}
			}
		case <-c.ikeRun.done:
			// The initiator keeps the tunnel's IKE SAs (a new one replaces
			// an IKE SA the server deleted alone): Run ending means the
			// IPsec side is gone.
			err = ikeError(c.ikeRun.err, c.ikeTo)
			if phase == phaseIKE && c.info.IKESuite == "" { // before phase 1 was up
				err = c.phase1Hint(err)
			}
		case <-c.l2tpRun.done:
			err = l2tpError(c.l2tpRun.err)
		case <-c.pppRun.done:
			err = pppError(c.pppRun.err)
		case <-setupDone:
			err = timeoutError([...]string{"IKE", "L2TP", "PPP"}[phase], [...]error{ErrIKE, ErrL2TP, ErrPPP}[phase], ctx)
			if phase == phaseIKE && gotReply == nil {
				// It answered, but nothing it sent completed an exchange.
				err.(*Error).Hint = "the server answered, but its IKE messages were malformed or did not authenticate, so Main Mode never completed (--log-level debug shows why each was dropped)"
			}
		case <-keepaliveC:
			// RFC 3948 §2.3: a NAT-keepalive only when nothing else was sent.
			if !c.data.TakeSent() {
				c.data.WriteTo(esp.NATKeepalive, c.nattTo)
				c.data.TakeSent()
			}
			keepalive.Reset(c.cfg.KeepaliveInterval)
		case <-c.done:
			if phase < phaseUp {
				up <- ErrClosed
			}
			return
		}
		if err != nil {
			fail(err)
			return
		}
	}
}

// onIKESetup handles IKE's events before the first ESP SA: with it, ESP is
// installed and L2TP starts (phase becomes phaseL2TP).
func (c *Client) onIKESetup(ev ike.Event, phase *setupPhase, timer *time.Timer) error {
	if p1, ok := ev.(ike.Phase1Up); ok {
		c.info.IKESuite = p1.Suite
		c.info.Times.Phase1 = c.watch.lap()
		c.log.Info("IKE SA established", "suite", p1.Suite, "server", c.ikeTo.String())
	}
	childUp, ok := ev.(ike.ChildSAUp)
	if !ok {
		return nil
	}
	child := childUp.Child
	c.info.Times.QuickMode = c.watch.lap()
	if err := c.data.InstallSA(child.Inbound, child.Outbound); err != nil {
		return &Error{Class: ErrIKE, Layer: "ESP", Err: err}
	}
	c.data.SetByteLifetime(child.Inbound.SPI, child.Outbound.SPI, lifeBytes(child))
	c.info.ESPSuite, c.info.PFS = child.Inbound.Alg.String(), child.PFS
	c.learnPFS(child)
	pfs := child.PFS
	if pfs == "" {
		pfs = "none"
	}
	c.log.Info("IPsec SA established", "suite", c.info.ESPSuite, "pfs", pfs,
		"spi_in", fmt.Sprintf("%08x", child.Inbound.SPI), "spi_out", fmt.Sprintf("%08x", child.Outbound.SPI))
	c.startL2TP()
	*phase = phaseL2TP
	timer.Stop()
	timer.Reset(c.cfg.L2TPTimeout)
	return nil
}

// startL2TP creates the PPP client (not running yet: frames the server
// sends right after ICCN queue up for it) and starts the L2TP LAC.
func (c *Client) startL2TP() {
	mru := c.data.InnerMTU(c.cfg.OuterMTU)
	c.ppp = ppp.NewClient(ppp.Config{
		User:     c.cfg.User,
		Password: c.cfg.Password,
		Auth:     c.cfg.Auth,
		MRU:      uint16(mru),
		Clock:    c.cfg.Clock,
		Logger:   c.log.With("layer", "ppp"),
		Rand:     c.cfg.Rand,
	}, c.data.SendPPP)
	c.data.SetFrames(c.ppp)

	c.lac = l2tp.NewLAC(l2tp.Config{
		Clock:  c.cfg.Clock,
		Logger: c.log,
		Rand:   c.cfg.Rand,
		// Every ESP packet from the server carries L2TP: while they arrive,
		// its L2TP is alive even if a control message or ack got lost.
		PeerActivity: c.data.RxESP.Load,
	}, l2tpTransport{c})
	c.data.SetControl(c.lac)
	c.l2tpRun.start(&c.sup, "L2TP", c.lac.Run)
}

// setupTimeout is the error of a phase's timer firing.
func (c *Client) setupTimeout(phase setupPhase, tunnelUp, linkUp, authed bool) error {
	switch phase {
	case phaseIKE:
		select {
		case <-c.gotReply: // the reply raced the timer
			return nil
		default:
		}
		return c.phase1Hint(&Error{Class: ErrServerUnreachable, Layer: "IKE",
			Err:  fmt.Errorf("no reply from %s within %s", c.ikeTo, c.cfg.ReplyTimeout),
			Hint: "check the server address and that UDP ports 500 and 4500 reach it"})
	case phaseL2TP:
		what := "no answer from the L2TP server"
		if tunnelUp {
			what = "the L2TP server set up the tunnel but no session"
		}
		e := &Error{Class: ErrL2TP, Layer: "L2TP", Err: fmt.Errorf("%w: %s within %s", l2tp.ErrTimeout, what, c.cfg.L2TPTimeout),
			Hint: "IPsec is up, so the server is reachable: check that it runs an L2TP service (xl2tpd) for IPsec clients"}
		if c.data.RxESP.Load() == 0 && c.data.RxDropped.Load() > 0 {
			e.Hint = fmt.Sprintf("the server sent %d ESP datagrams but none authenticated (truncated, corrupted or replayed): a broken server or something in the path rewrites them", c.data.RxDropped.Load())
		}
		return e
	case phasePPP:
		if authed {
			return &Error{Class: ErrPPP, Layer: "PPP", Err: fmt.Errorf("%w: within %s of authentication", ppp.ErrNoIP, c.cfg.PPPTimeout),
				Hint: "the server assigned no IP address: its address pool may be exhausted"}
		}
		what := "link negotiation (LCP)"
		if linkUp {
			what = "authentication"
		}
		return &Error{Class: ErrPPP, Layer: "PPP", Err: fmt.Errorf("%w: %s did not finish within %s", ppp.ErrTimeout, what, c.cfg.PPPTimeout),
			Hint: "the server's PPP stopped answering"}
	}
	return nil
}

// startStack brings the network stack up on the address IPCP gave.
func (c *Client) startStack(ip ppp.IPUp) error {
	mtu := c.data.InnerMTU(c.cfg.OuterMTU)
	if ip.PeerMRU != 0 && int(ip.PeerMRU) < mtu {
		mtu = int(ip.PeerMRU)
	}
	c.info.Address, c.info.PeerAddr, c.info.DNS, c.info.MTU = ip.Local, ip.Peer, ip.DNS, mtu
	c.log.Info("IPCP up", "address", ip.Local.String(), "peer", ip.Peer.String(), "dns", fmt.Sprint(ip.DNS), "mtu", mtu)

	var capture io.Writer
	if c.cfg.Capture != nil {
		capture = c.cfg.Capture()
	}
	st, err := netstack.New(netstack.Config{
		LocalAddr: ip.Local,
		DNS:       ip.DNS,
		MTU:       mtu,
		Headroom:  datapath.Headroom,
		Tailroom:  datapath.Tailroom,
		Logger:    c.log.With("layer", "netstack"),
		OutBatch:  c.data.SendIPBatch,
		Capture:   capture,
	}, c.data.SendIP)
	if err != nil {
		return &Error{Class: ErrNetstack, Layer: "netstack", Err: err}
	}
	c.stack.Store(st)
	c.data.SetIP(st)
	return nil
}

// ipv6Up enables IPv6 on the stack when IPv6CP opens (before or after
// IPCP: the tunnel never waits for it). Addresses beyond the link-local
// one come from the server's Router Advertisements.
func (c *Client) ipv6Up(ev ppp.IPv6Up) {
	st := c.stack.Load()
	if st == nil {
		return
	}
	if err := st.EnableIPv6(ev.Local); err != nil {
		c.log.Warn("IPv6 not enabled", "err", err)
		return
	}
	var ll [16]byte
	ll[0], ll[1] = 0xfe, 0x80
	copy(ll[8:], ev.Local[:])
	c.log.Info("IPv6CP up", "link_local", netip.AddrFrom16(ll).String())
}

// ipv6Down disables IPv6 on the stack when the server closes IPv6CP:
// IPv6 destinations then fail at once instead of timing out.
func (c *Client) ipv6Down() {
	if st := c.stack.Load(); st != nil {
		st.DisableIPv6()
		c.log.Info("IPv6CP down: IPv6 disabled in the tunnel")
	}
}

// onIKEEvent handles what IKE reports once the first IPsec SA is installed,
// during setup as afterwards: a new IKE SA, a new IPsec SA (a rekey by
// either side: install it at once, or L2TP is cut off when the server
// switches), a deleted one.
func (c *Client) onIKEEvent(ev ike.Event) {
	switch ev := ev.(type) {
	case ike.Phase1Up:
		c.counters.ikeRenewals.Add(1)
		c.log.Info("IKE SA re-established", "suite", ev.Suite)
	case ike.ChildSAUp:
		c.learnPFS(ev.Child)
		install := c.data.InstallSA
		if ev.Child.Initiated {
			install = c.data.InstallSAPeerMayLag
		}
		if err := install(ev.Child.Inbound, ev.Child.Outbound); err != nil {
			c.log.Warn("cannot install rekeyed IPsec SA", "err", err)
			return
		}
		c.data.SetByteLifetime(ev.Child.Inbound.SPI, ev.Child.Outbound.SPI, lifeBytes(ev.Child))
		c.counters.espRekeys.Add(1)
		c.log.Info("IPsec SA rekeyed", "spi_in", fmt.Sprintf("%08x", ev.Child.Inbound.SPI))
	case ike.ChildSADeleted:
		if ev.ByPeer {
			c.counters.espDeleted.Add(1)
			c.data.PeerDeleted(ev.InboundSPI)
			c.log.Info("IPsec SA deleted by the server", "spi_in", fmt.Sprintf("%08x", ev.InboundSPI))
		}
	}
}

// lifeBytes is a pair's kilobyte lifetime in bytes (0: none), saturated
// (a server may send any 64-bit value).
func lifeBytes(child ike.ChildSA) uint64 {
	if child.LifeKilobytes > math.MaxUint64>>10 {
		return math.MaxUint64
	}
	return child.LifeKilobytes << 10
}

// learnPFS keeps PFS on for later IKE SAs once the server chose it.
func (c *Client) learnPFS(child ike.ChildSA) {
	if child.PFS != "" && c.pfs == ike.PFSAuto {
		c.pfs = ike.PFSOn
	}
}

func timeoutError(layer string, class error, ctx context.Context) error {
	return &Error{Class: class, Layer: layer, Err: fmt.Errorf("not established in time: %w", context.Cause(ctx)),
		Hint: "the server stopped answering during setup"}
}

func ikeError(err error, server netip.AddrPort) error {
	if err == nil {
		err = ErrClosed
	}
	e := &Error{Class: ErrIKE, Layer: "IKE", Err: err}
	switch {
	case errors.Is(err, ike.ErrTimeout):
		e.Class = ErrServerUnreachable
		e.Hint = fmt.Sprintf("no answer from %s: check the server address and that UDP 500/4500 reach it", server)
	case errors.Is(err, ike.ErrRemoteID):
		e.Hint = "check --remote-id: it must be the identity the server sends (its leftid/local id)"
	case errors.Is(err, ike.ErrCertUntrusted):
		e.Hint = "the server's certificate does not lead to a CA in --ca (or has expired): check --ca against the server's CA"
	case errors.Is(err, ike.ErrIdentityMismatch):
		e.Hint = "the server's certificate is valid but names someone else: give the name or DN it has as --remote-id (or connect with --server set to a name in its certificate)"
	case errors.Is(err, ike.ErrBadSignature):
		e.Hint = "the server's signature does not verify with its certificate: the server holds a different key than its certificate (or the message was altered)"
	case errors.Is(err, ike.ErrCertRejected):
		e.Hint = "the server refused our certificate: check that --cert is issued by a CA the server trusts and that the server accepts certificate (rsasig) authentication"
	case errors.Is(err, ike.ErrAuthFailed):
		e.Hint = "phase-1 authentication failed: the pre-shared key is probably wrong"
	case errors.Is(err, ike.ErrNoProposalChosen):
		e.Hint = "the server accepted none of our algorithms"
	case errors.Is(err, ike.ErrDeleted):
		e.Hint = "the server deleted the IKE SA"
	case errors.Is(err, ike.ErrLostState):
		e.Class = ErrServerUnreachable
		e.Hint = "the server forgot the exchange half-way (it restarted or came back from a freeze): try again"
	case errors.Is(err, ike.ErrPeerDead):
		e.Class, e.Layer = ErrServerUnreachable, "IKE/ESP"
		e.Hint = "the server went silent: nothing arrived over IKE or ESP and it did not answer dead-peer detection (--dpd-interval)"
	}
	return e
}

func l2tpError(err error) error {
	if err == nil {
		err = ErrClosed
	}
	e := &Error{Class: ErrL2TP, Layer: "L2TP", Err: err}
	switch {
	case errors.Is(err, l2tp.ErrTimeout):
		e.Hint = "IPsec is up but the L2TP server does not answer: check that the server runs an L2TP service (xl2tpd) for IPsec clients"
	case errors.Is(err, l2tp.ErrTunnelClosed), errors.Is(err, l2tp.ErrSessionClosed):
		e.Hint = "the server closed the L2TP connection"
	}
	return e
}

func pppError(err error) error {
	if err == nil {
		err = ErrClosed
	}
	e := &Error{Class: ErrPPP, Layer: "PPP", Err: err}
	switch {
	case errors.Is(err, ppp.ErrAuthFailed):
		e.Hint = "check --user and --password"
	case ppp.AsAuthRefused(err) != nil && ppp.AsAuthRefused(err).Method.PolicyName() != "":
		m := ppp.AsAuthRefused(err).Method
		e.Hint = "add " + m.PolicyName() + " to --ppp-auth"
		if m == ppp.AuthPAP {
			e.Hint += "; PAP sends the password in clear to anyone who holds the PSK"
		}
	case errors.Is(err, ppp.ErrAuthRejected):
		e.Hint = "the server wants an authentication method we do not allow"
	case errors.Is(err, ppp.ErrNoIP):
		e.Hint = "the server assigned no IP address: its address pool may be exhausted"
	case errors.Is(err, ppp.ErrTerminated):
		e.Hint = "the server ended the PPP link"
	}
	return e
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
// (recvmmsg, and UDP GRO on Linux) and handles each datagram in turn.
func (c *Client) readLoop() {
	rx := datapath.NewReceiver(c.conn, rxBatch)
	handle := c.handleDatagram
	for {
		err := rx.Read(handle)
		c.data.Flush() // the end of a burst: hand held segments to the stack
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
// ISAKMP, anything else is ESP. dg is only valid during the call.
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
		c.data.Receive(dg)
	case esp.KindKeepalive:
		c.rxKeepalives.Add(1)
	}
}

// phase1Hint adds Aggressive Mode to the hint of a Main Mode failure that
// a server accepting only Aggressive Mode causes: no answer to MM1,
// NO-PROPOSAL-CHOSEN, INVALID-ID-INFORMATION or an authentication failure
// (a server that matches its PSK to an identity only Aggressive Mode
// sends in clear). The other failures, and those in Aggressive Mode, are
// left as they are.
func (c *Client) phase1Hint(err error) error {
	var e *Error
	// Aggressive Mode here is PSK only: no hint for certificate failures.
	if c.cfg.IKEMode != ike.ModeMain || c.cfg.Cert != nil || !errors.As(err, &e) || errors.Is(e.Err, ike.ErrRemoteID) {
		return err
	}
	switch {
	case errors.Is(e.Class, ErrServerUnreachable) && !errors.Is(e.Err, ike.ErrPeerDead),
		errors.Is(e.Err, ike.ErrNoProposalChosen), errors.Is(e.Err, ike.ErrAuthFailed):
		e.Hint += "; or the server accepts only Aggressive Mode: try --ike-mode aggressive (with --remote-id/--local-id if it checks identities)"
	}
	return err
}
