package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/net/dns/dnsmessage"

	"github.com/l2tpproxy/l2tpproxy/tunnel"
)

// checkCommand is `l2tpproxy check [up flags] [--json]`: connect, report
// what was negotiated, how long each layer took and a round trip through
// the tunnel, tear down. The exit code is 0 or the failure's class (2-6).
func checkCommand() *cli.Command {
	return &cli.Command{
		Name:  "check",
		Usage: "connect, print what was negotiated, the time per layer and a round trip through the tunnel, disconnect",
		Description: "check takes the same flags as up (the proxy flags are accepted and not used) and exits 0 when the\n" +
			"tunnel came up, or with the failure's code (2-6). The round trip is a DNS query for \"localhost.\" (which\n" +
			"resolvers answer themselves, RFC 6761 §6.3) to the first DNS server IPCP gave, through the tunnel.",
		Flags: append(append(connectionFlags(), listenerFlags()...),
			&cli.BoolFlag{Name: "json", Usage: "print one JSON object on stdout (fields in the README)"}),
		Action: runCheck,
	}
}

// checkReport is check's JSON object. Every field is documented in the
// README ("l2tpproxy check"); keep the two in step.
type checkReport struct {
	OK       bool `json:"ok"`
	ExitCode int  `json:"exit_code"`

	Server      string      `json:"server"`
	Local       string      `json:"local"`
	IKESuite    string      `json:"ike_suite"`
	ESPSuite    string      `json:"esp_suite"`
	PFS         string      `json:"pfs"`
	L2TPPeer    string      `json:"l2tp_peer"`
	L2TPVendor  string      `json:"l2tp_vendor,omitempty"`
	PPPAuth     string      `json:"ppp_auth"`
	Address     string      `json:"address"`
	PeerAddress string      `json:"peer_address"`
	DNS         []string    `json:"dns"`
	MTU         int         `json:"mtu"`
	TimesMS     *checkTimes `json:"times_ms"`
	RTT         *rttResult  `json:"rtt"`
	TeardownMS  float64     `json:"teardown_ms"`

	layerTimes tunnel.Times
}

// checkFailure is check's JSON object when the tunnel did not come up.
type checkFailure struct {
	OK       bool   `json:"ok"`
	Error    string `json:"error"`
	ExitCode int    `json:"exit_code"`
}

type checkTimes struct {
	IKEPhase1 float64 `json:"ike_phase1"`
	QuickMode float64 `json:"quick_mode"`
	L2TP      float64 `json:"l2tp"`
	PPPLCP    float64 `json:"ppp_lcp"`
	PPPAuth   float64 `json:"ppp_auth"`
	IPCP      float64 `json:"ipcp"`
	Total     float64 `json:"total"`
}

// rttResult is the round trip through the tunnel.
type rttResult struct {
	Method   string  `json:"method"`           // "dns"
	Target   string  `json:"target,omitempty"` // DNS server:53
	Query    string  `json:"query"`            // "localhost. A"
	Sent     int     `json:"sent"`
	Answered int     `json:"answered"`
	MinMS    float64 `json:"min_ms,omitempty"`
	MedianMS float64 `json:"median_ms,omitempty"`
	MaxMS    float64 `json:"max_ms,omitempty"`
	Error    string  `json:"error,omitempty"`
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func runCheck(cx *cli.Context) error {
	// Progress lines only when asked for: the report is the output.
	level := cx.String("log-level")
	if !cx.IsSet("log-level") {
		level = "warn"
	}
	log, err := newLogger(level)
	if err != nil {
		return err
	}
	asJSON := cx.Bool("json")
	fail := func(err error) error {
		if asJSON {
			writeJSON(os.Stdout, checkFailure{Error: oneLine(err), ExitCode: exitCode(err)})
		}
		return err
	}
	cfg, err := tunnelConfig(cx, log)
	if err != nil {
		return fail(err)
	}
	ctx, stop := signal.NotifyContext(cx.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	c, err := tunnel.Dial(ctx, cfg)
	if err != nil {
		return fail(err)
	}
	info := c.Info()
	rtt := measureRTT(ctx, c, info.DNS, rttSamples, rttTimeout)
	began := time.Now()
	c.Close()
	r := reportOf(info, rtt)
	r.TeardownMS = ms(time.Since(began))
	if asJSON {
		writeJSON(os.Stdout, r)
	} else {
		writeText(os.Stdout, r)
	}
	return nil
}

func reportOf(info tunnel.Info, rtt *rttResult) checkReport {
	t := info.Times
	pfs := info.PFS
	if pfs == "" {
		pfs = "none"
	}
	r := checkReport{
		OK:          true,
		Server:      info.Server.String(),
		Local:       info.Local.String(),
		IKESuite:    info.IKESuite,
		ESPSuite:    info.ESPSuite,
		PFS:         pfs,
		L2TPPeer:    info.L2TPPeer,
		L2TPVendor:  info.L2TPVendor,
		PPPAuth:     info.PPPAuth,
		Address:     info.Address.String(),
		PeerAddress: info.PeerAddr.String(),
		DNS:         []string{},
		MTU:         info.MTU,
		TimesMS: &checkTimes{
			IKEPhase1: ms(t.Phase1), QuickMode: ms(t.QuickMode), L2TP: ms(t.L2TP),
			PPPLCP: ms(t.LCP), PPPAuth: ms(t.Auth), IPCP: ms(t.IPCP), Total: ms(info.ConnectDur),
		},
		RTT:        rtt,
		layerTimes: t,
	}
	for _, d := range info.DNS {
		r.DNS = append(r.DNS, d.String())
	}
	return r
}

func writeJSON(w io.Writer, r any) {
	b, _ := json.Marshal(r) // plain strings and numbers: cannot fail
	fmt.Fprintf(w, "%s\n", b)
}

func writeText(w io.Writer, r checkReport) {
	row := func(k, format string, a ...any) { fmt.Fprintf(w, "%-11s "+format+"\n", append([]any{k}, a...)...) }
	row("server", "%s (from %s)", r.Server, r.Local)
	row("IKE SA", "%s", r.IKESuite)
	row("IPsec SA", "%s, PFS %s", r.ESPSuite, r.PFS)
	peer := r.L2TPPeer
	if r.L2TPVendor != "" {
		peer += " (" + r.L2TPVendor + ")"
	}
	row("L2TP peer", "%s", peer)
	row("PPP auth", "%s", r.PPPAuth)
	row("address", "%s (peer %s)", r.Address, r.PeerAddress)
	dns := strings.Join(r.DNS, ", ")
	if dns == "" {
		dns = "none"
	}
	row("DNS", "%s", dns)
	row("MTU", "%d", r.MTU)
	t := r.layerTimes
	d := func(x time.Duration) string { return x.Round(100 * time.Microsecond).String() }
	row("time", "IKE phase 1 %s, quick mode %s, L2TP %s, PPP LCP %s, auth %s, IPCP %s (connect %s in all)",
		d(t.Phase1), d(t.QuickMode), d(t.L2TP), d(t.LCP), d(t.Auth), d(t.IPCP), time.Duration(r.TimesMS.Total*float64(time.Millisecond)).Round(time.Millisecond))
	if rt := r.RTT; rt.Answered > 0 {
		row("RTT", "%.2f ms median, %.2f-%.2f ms (%d of %d DNS queries %q to %s through the tunnel answered)",
			rt.MedianMS, rt.MinMS, rt.MaxMS, rt.Answered, rt.Sent, rt.Query, rt.Target)
	} else {
		row("RTT", "none: %s", rt.Error)
	}
}

// RTT probe: a few DNS queries, one at a time.
const (
	rttSamples = 5
	rttTimeout = 2 * time.Second
	rttQuery   = "localhost."
)

// dialer is what measureRTT needs of a tunnel.
type dialer interface {
	DialContext(ctx context.Context, network, address string) (net.Conn, error)
}

// measureRTT sends n DNS queries for "localhost." A, one after the other, to
// the first DNS server through the tunnel and times each answer. Any answer
// counts (NXDOMAIN, REFUSED): it is the round trip through ESP, L2TP, PPP
// and the server's network that is measured, and RFC 6761 §6.3 has
// resolvers answer localhost names themselves, without recursion.
func measureRTT(ctx context.Context, d dialer, servers []netip.Addr, n int, timeout time.Duration) *rttResult {
	r := &rttResult{Method: "dns", Query: rttQuery + " A"}
	if len(servers) == 0 {
		r.Error = "the server assigned no DNS server (IPCP), so there is nothing to ask"
		return r
	}
	target := netip.AddrPortFrom(servers[0], 53)
	r.Target = target.String()
	conn, err := d.DialContext(ctx, "udp", r.Target)
	if err != nil {
		r.Error = oneLine(err)
		return r
	}
	defer conn.Close()
	name := dnsmessage.MustNewName(rttQuery)
	var got []time.Duration
	buf := make([]byte, 1500)
	for range n {
		r.Sent++
		id := uint16(rand.Uint32())
		q, err := dnsQuery(id, name)
		if err != nil {
			r.Error = err.Error()
			return r
		}
		start := time.Now()
		if _, err := conn.Write(q); err != nil {
			r.Error = oneLine(err)
			break
		}
		_ = conn.SetReadDeadline(start.Add(timeout))
		for {
			m, err := conn.Read(buf)
			if err != nil {
				if ctx.Err() != nil {
					r.Error = ctx.Err().Error()
					return summarize(r, got)
				}
				r.Error = fmt.Sprintf("no answer from %s within %s", r.Target, timeout)
				break
			}
			var p dnsmessage.Parser
			h, err := p.Start(buf[:m])
			if err == nil && h.Response && h.ID == id {
				got = append(got, time.Since(start))
				break
			}
			// Late answer to an earlier query, or garbage: keep reading.
		}
	}
	return summarize(r, got)
}

func dnsQuery(id uint16, name dnsmessage.Name) ([]byte, error) {
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: id, RecursionDesired: true})
	if err := b.StartQuestions(); err != nil {
		return nil, err
	}
	if err := b.Question(dnsmessage.Question{Name: name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}); err != nil {
		return nil, err
	}
	return b.Finish()
}

// summarize fills in the figures; an error stays only if a query went
// unanswered.
func summarize(r *rttResult, got []time.Duration) *rttResult {
	r.Answered = len(got)
	if r.Answered == r.Sent {
		r.Error = ""
	}
	if len(got) == 0 {
		return r
	}
	slices.Sort(got)
	r.MinMS, r.MedianMS, r.MaxMS = ms(got[0]), ms(got[len(got)/2]), ms(got[len(got)-1])
	return r
}
