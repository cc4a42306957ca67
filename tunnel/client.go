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
//	supervise                 events after setup (rekeys, deletes, layer deaths), NAT keepalives
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
	// RemoteID is the identity the server must prove (--remote-id); with
	// Cert and no RemoteID, the server's certificate must name Server.
	RemoteID string
	User     string
	Password []byte // PPP password (secret)

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
	// PFS is whether Quick Mode carries a Diffie-Hellman exchange (default
	// ike.PFSAuto: only if the server refuses a Quick Mode without).
	PFS ike.PFS

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
	conn   *net.UDPConn
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

	closeOnce sync.Once
	closing   atomic.Bool // set by teardown: layers ending now are not failures
	done      chan struct{}
	errMu     sync.Mutex
	err       error
}

// layerRun is one layer's Run goroutine: its own context so teardown can go
// top-down (PPP, then L2TP, then IKE), each layer saying goodbye in turn.
type layerRun struct {
	cancel context.CancelFunc
	done   chan struct{}
	err    error // valid after done is closed
}

func (r *layerRun) start(run func(context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	r.done = make(chan struct{})
	go func() {
		defer close(r.done)
		r.err = run(ctx)
	}()
}

// stop cancels the layer and waits (bounded) for its goodbye to finish.
func (r *layerRun) stop(timeout time.Duration) {
	if r.done == nil {
		return
	}
	r.cancel()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-r.done:
	case <-t.C:
	}
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
		return nil, err
	}
	c.info.ConnectDur = time.Since(start)
	go c.supervise()
	return c, nil
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
// IKE Deletes, then closes the socket. It is safe to call more than once.
func (c *Client) Close() error {
	c.teardown(true)
	return nil
}

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
	go c.teardown(!errors.Is(err, ike.ErrPeerDead))
}

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
		c.pppRun.stop(wait)
		c.l2tpRun.stop(wait)
		c.ikeMu.Lock() // no new IKE SA starts once closing is set
		ikeRun := c.ikeRun
		c.ikeMu.Unlock()
		if ikeRun != nil {
			ikeRun.stop(wait)
		}
		c.conn.Close()
		close(c.done)
	})
}

func (c *Client) markReply() {
	c.replyOnce.Do(func() { close(c.gotReply) })
}

// certFor is Cert with ServerName set to the --server host, which the
// server's certificate must name when no RemoteID is given.
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
		PSK:        c.cfg.PSK,
		Cert:       c.certFor(),
		RemoteID:   c.cfg.RemoteID,
		LocalAddr:  c.local,
		RemoteAddr: c.ikeTo,
		L2TPPort:   c.cfg.L2TPPort,
		Phase1:     c.cfg.Phase1,
		Phase2:     c.cfg.Phase2,
		PFS:        c.pfs,
		Clock:      c.cfg.Clock,
		Logger:     c.log.With("layer", "ike"),
		Rand:       c.cfg.Rand,

		// Authenticated ESP and keepalives from the server show it alive
		// as well as IKE does (RFC 3706 §5.3: DPD only in silence).
		DPDInterval:    max(c.cfg.DPDInterval, 0),
		Phase1Lifetime: c.cfg.Phase1Lifetime,
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
	c.ikeRun.start(ini.Run)
	return ini, nil
}

// connect brings the layers up one after the other.
func (c *Client) connect(ctx context.Context) error {
	log := c.log
	c.watch.start()
	ini, err := c.startIKE()
	if err != nil {
		return err
	}
	go c.readLoop()

	// IKE: wait for the phase-1 and the ESP SA.
	unreachable := time.NewTimer(c.cfg.ReplyTimeout)
	defer unreachable.Stop()
	gotReply := c.gotReply // nil once seen, so the closed channel stops firing
	var child ike.ChildSA
ikeLoop:
	for {
		select {
		case ev := <-ini.Events():
			switch ev := ev.(type) {
			case ike.Phase1Up:
				c.info.IKESuite = ev.Suite
				c.info.Times.Phase1 = c.watch.lap()
				log.Info("IKE SA established", "suite", ev.Suite, "server", c.ikeTo.String())
			case ike.ChildSAUp:
				child = ev.Child
				c.info.Times.QuickMode = c.watch.lap()
				break ikeLoop
			}
		case <-gotReply:
			unreachable.Stop()
			gotReply = nil
		case <-unreachable.C:
			select {
			case <-c.gotReply:
				continue
			default:
			}
			return &Error{Class: ErrServerUnreachable, Layer: "IKE",
				Err:  fmt.Errorf("no reply from %s within %s", c.ikeTo, c.cfg.ReplyTimeout),
				Hint: "check the server address and that UDP ports 500 and 4500 reach it"}
		case <-c.ikeRun.done:
			return ikeError(c.ikeRun.err, c.ikeTo)
		case <-ctx.Done():
			return timeoutError("IKE", ErrIKE, ctx)
		}
	}
	if err := c.data.InstallSA(child.Inbound, child.Outbound); err != nil {
		return &Error{Class: ErrIKE, Layer: "ESP", Err: err}
	}
	c.info.ESPSuite, c.info.PFS = child.Inbound.Alg.String(), child.PFS
	c.learnPFS(child)
	pfs := child.PFS
	if pfs == "" {
		pfs = "none"
	}
	log.Info("IPsec SA established", "suite", c.info.ESPSuite, "pfs", pfs,
		"spi_in", fmt.Sprintf("%08x", child.Inbound.SPI), "spi_out", fmt.Sprintf("%08x", child.Outbound.SPI))

	// The PPP client exists before the L2TP session is up so that frames the
	// server sends right after ICCN queue up for it; it runs once it is.
	mru := c.data.InnerMTU(c.cfg.OuterMTU)
	c.ppp = ppp.NewClient(ppp.Config{
		User:     c.cfg.User,
		Password: c.cfg.Password,
		Auth:     c.cfg.Auth,
		MRU:      uint16(mru),
		Clock:    c.cfg.Clock,
		Logger:   log.With("layer", "ppp"),
		Rand:     c.cfg.Rand,
	}, c.data.SendPPP)
	c.data.SetFrames(c.ppp)

	// L2TP: tunnel and one session.
	c.lac = l2tp.NewLAC(l2tp.Config{
		Clock:  c.cfg.Clock,
		Logger: log,
		Rand:   c.cfg.Rand,
		// Every ESP packet from the server carries L2TP: while they arrive,
		// its L2TP is alive even if a control message or ack got lost.
		PeerActivity: c.data.RxESP.Load,
	}, l2tpTransport{c})
	c.data.SetControl(c.lac)
	c.l2tpRun.start(c.lac.Run)
	l2tpTimer := time.NewTimer(c.cfg.L2TPTimeout)
	defer l2tpTimer.Stop()
	tunnelUp := false
l2tpLoop:
	for {
		select {
		case <-l2tpTimer.C:
			what := "no answer from the L2TP server"
			if tunnelUp {
				what = "the L2TP server set up the tunnel but no session"
			}
			return &Error{Class: ErrL2TP, Layer: "L2TP", Err: fmt.Errorf("%w: %s within %s", l2tp.ErrTimeout, what, c.cfg.L2TPTimeout),
				Hint: "IPsec is up, so the server is reachable: check that it runs an L2TP service (xl2tpd) for IPsec clients"}
		case ev := <-c.lac.Events():
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
				break l2tpLoop
			}
		case ev := <-ini.Events(): // a rekey while L2TP comes up
			c.onIKEEvent(ev)
		case <-c.l2tpRun.done:
			return l2tpError(c.l2tpRun.err)
		case <-c.ikeRun.done:
			return ikeError(c.ikeRun.err, c.ikeTo)
		case <-ctx.Done():
			return timeoutError("L2TP", ErrL2TP, ctx)
		}
	}

	// PPP: LCP, authentication, IPCP.
	c.pppRun.start(c.ppp.Run)
	pppTimer := time.NewTimer(c.cfg.PPPTimeout)
	defer pppTimer.Stop()
	authed, linkUp := false, false
	var ip ppp.IPUp
pppLoop:
	for {
		select {
		case <-pppTimer.C:
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
		case ev := <-c.ppp.Events():
			switch ev := ev.(type) {
			case ppp.LinkUp:
				linkUp = true
				c.info.Times.LCP = c.watch.lap()
				pppTimer.Reset(c.cfg.PPPTimeout)
			case ppp.AuthUp:
				authed = true
				pppTimer.Reset(c.cfg.PPPTimeout)
				c.info.PPPAuth = ev.Method.String()
				c.info.Times.Auth = c.watch.lap()
				log.Info("PPP authenticated", "method", ev.Method.String())
			case ppp.IPUp:
				ip = ev
				c.info.Times.IPCP = c.watch.lap()
				break pppLoop
			}
		case ev := <-ini.Events(): // a rekey while PPP comes up
			c.onIKEEvent(ev)
		case <-c.pppRun.done:
			return pppError(c.pppRun.err)
		case <-c.l2tpRun.done:
			return l2tpError(c.l2tpRun.err)
		case <-c.ikeRun.done:
			return ikeError(c.ikeRun.err, c.ikeTo)
		case <-ctx.Done():
			return timeoutError("PPP", ErrPPP, ctx)
		}
	}
	mtu := mru
	if ip.PeerMRU != 0 && int(ip.PeerMRU) < mtu {
		mtu = int(ip.PeerMRU)
	}
	c.info.Address, c.info.PeerAddr, c.info.DNS, c.info.MTU = ip.Local, ip.Peer, ip.DNS, mtu
	log.Info("IPCP up", "address", ip.Local.String(), "peer", ip.Peer.String(), "dns", fmt.Sprint(ip.DNS), "mtu", mtu)

	st, err := netstack.New(netstack.Config{
		LocalAddr: ip.Local,
		DNS:       ip.DNS,
		MTU:       mtu,
		Headroom:  datapath.Headroom,
		Tailroom:  datapath.Tailroom,
		Logger:    log.With("layer", "netstack"),
		OutBatch:  c.data.SendIPBatch,
	}, c.data.SendIP)
	if err != nil {
		return &Error{Class: ErrNetstack, Layer: "netstack", Err: err}
	}
	c.stack.Store(st)
	c.data.SetIP(st)
	return nil
}

// supervise watches the layers once the tunnel is up: ESP rekeys and deletes
// from IKE, any layer ending, and NAT keepalives while idle.
func (c *Client) supervise() {
	keepalive := c.cfg.Clock.NewTimer(c.cfg.KeepaliveInterval)
	defer keepalive.Stop()
	// Keep draining every layer's events: their owners block (IKE) or drop
	// (others) when nobody reads. A closed channel is set to nil.
	lacEv, pppEv := c.lac.Events(), c.ppp.Events()
	// The initiator keeps the tunnel's IKE SAs: when the server deletes the
	// IKE SA but not the IPsec SA, it negotiates a new one in place and
	// Run goes on; Run ending means the IPsec side is gone.
	ini := c.ike.Load()
	for {
		select {
		case _, ok := <-lacEv:
			if !ok {
				lacEv = nil
			}
		case _, ok := <-pppEv:
			if !ok {
				pppEv = nil
			}
		case ev := <-ini.Events():
			c.onIKEEvent(ev)
		case <-c.ikeRun.done:
			c.fail(ikeError(c.ikeRun.err, c.ikeTo))
			return
		case <-c.l2tpRun.done:
			c.fail(l2tpError(c.l2tpRun.err))
			return
		case <-c.pppRun.done:
			c.fail(pppError(c.pppRun.err))
			return
		case <-keepalive.C():
			// RFC 3948 §2.3: a NAT-keepalive only when nothing else was sent.
			if !c.data.TakeSent() {
				c.data.WriteTo(esp.NATKeepalive, c.nattTo)
				c.data.TakeSent()
			}
			keepalive.Reset(c.cfg.KeepaliveInterval)
		case <-c.done:
			return
		}
	}
}

// onIKEEvent handles what IKE reports once the first IPsec SA is installed,
// during setup as afterwards: a new IKE SA, a new IPsec SA (a rekey by
// either side: install it at once, or L2TP is cut off when the server
// switches), a deleted one.
func (c *Client) onIKEEvent(ev ike.Event) {
	switch ev := ev.(type) {
	case ike.Phase1Up:
		c.log.Info("IKE SA re-established", "suite", ev.Suite)
	case ike.ChildSAUp:
		c.learnPFS(ev.Child)
		if err := c.data.InstallSA(ev.Child.Inbound, ev.Child.Outbound); err != nil {
			c.log.Warn("cannot install rekeyed IPsec SA", "err", err)
			return
		}
		c.log.Info("IPsec SA rekeyed", "spi_in", fmt.Sprintf("%08x", ev.Child.Inbound.SPI))
	case ike.ChildSADeleted:
		if ev.ByPeer {
			c.log.Info("IPsec SA deleted by the server", "spi_in", fmt.Sprintf("%08x", ev.InboundSPI))
		}
	}
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
