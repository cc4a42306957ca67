// The tunnel's event loop: setup phase by phase, then the events of every
// layer for as long as the tunnel is up.

package tunnel

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/netip"
	"time"

	"github.com/l2tpproxy/l2tpproxy/netstack"
	"github.com/l2tpproxy/l2tpproxy/tunnel/clock"
	"github.com/l2tpproxy/l2tpproxy/tunnel/datapath"
	"github.com/l2tpproxy/l2tpproxy/tunnel/esp"
	"github.com/l2tpproxy/l2tpproxy/tunnel/ike"
	"github.com/l2tpproxy/l2tpproxy/tunnel/l2tp"
	"github.com/l2tpproxy/l2tpproxy/tunnel/ppp"
)

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
	if err := c.data.InstallLimitedSA(child.Inbound, child.Outbound, false, lifeBytes(child)); err != nil {
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
		PeerRTT:  c.info.Times.QuickMode,
		Clock:    c.cfg.Clock,
		Logger:   c.log.With("layer", "ppp"),
		Rand:     c.cfg.Rand,
	}, c.data.SendPPP)
	c.data.SetFrames(c.ppp)

	c.lac = l2tp.NewLAC(l2tp.Config{
		Clock:             c.cfg.Clock,
		Logger:            c.log,
		Rand:              c.cfg.Rand,
		FirstSCCRQTimeout: firstSCCRQTimeout(c.info.Times.QuickMode),
		// Every ESP packet from the server carries L2TP: while they arrive,
		// its L2TP is alive even if a control message or ack got lost.
		PeerActivity: c.data.RxESP.Load,
	}, l2tpTransport{c})
	c.data.SetControl(c.lac)
	c.l2tpRun.start(&c.sup, "L2TP", c.lac.Run)
}

// Bounds of firstSCCRQTimeout: the floor leaves the server time to
// install the SA and answer; the cap is L2TP's own first timeout.
const (
	minFirstSCCRQ = 200 * time.Millisecond
	maxFirstSCCRQ = time.Second
)

// firstSCCRQTimeout is how long the first SCCRQ waits for its SCCRP
// before a new one goes out: twice the Quick Mode's round trip (QM1 to
// QM2, with the server's work for it), within [minFirstSCCRQ,
// maxFirstSCCRQ]. That SCCRQ follows QM3 at once, and a server whose
// daemon installs the SA in the kernel after QM3 (Libreswan, strongSwan)
// drops it if it comes first: resent after 1 s, that loss was most of
// L2TP's time.
func firstSCCRQTimeout(quickMode time.Duration) time.Duration {
	return min(max(2*quickMode, minFirstSCCRQ), maxFirstSCCRQ)
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

		NoStallProbes: c.cfg.NoStallProbes,
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
		if err := c.data.InstallLimitedSA(ev.Child.Inbound, ev.Child.Outbound, ev.Child.Initiated, lifeBytes(ev.Child)); err != nil {
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
