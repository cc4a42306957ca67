package main

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/l2tpproxy/l2tpproxy/proxy"
	"github.com/l2tpproxy/l2tpproxy/tunnel"
	"github.com/l2tpproxy/l2tpproxy/tunnel/datapath"
)

// defaultTunnelName is the tunnel label of the one tunnel of a process
// without a tunnels list.
const defaultTunnelName = "default"

// monitor follows serve (which tunnels are up, since when, why they went
// down, whether the proxies listen) and is the Prometheus collector of the
// admin endpoint. Each tunnel has its tunnelMonitor; its metrics carry its
// name as the tunnel label. The proxies are shared by every tunnel (a
// client connection is accepted before its destination is known), so
// their metrics carry no tunnel label. A nil *monitor does nothing.
type monitor struct {
	mu        sync.Mutex
	listening bool

	tunnels    []*tunnelMonitor        // in the configuration's order
	proxies    map[string]*proxy.Stats // by proxy: socks5, http
	reconnects *prometheus.CounterVec
	connectDur *prometheus.HistogramVec
}

// tunnelMonitor follows one tunnel. The layers keep their own counters
// (atomics, read by Stats at scrape time); the tunnelMonitor adds the
// counts of the tunnels that have ended so that the totals never go back
// across reconnects. A nil *tunnelMonitor does nothing.
type tunnelMonitor struct {
	name       string
	reconnects *prometheus.CounterVec // curried with the tunnel label
	connectDur prometheus.Observer

	mu      sync.Mutex
	cur     *tunnel.Client // nil while down
	upSince time.Time
	ended   tunnel.Stats // sum over the tunnels that have ended
	down    string       // why the tunnel is down ("" while up)
}

// newMonitor returns the monitor of the named tunnels (one named
// defaultTunnelName if none is).
func newMonitor(names ...string) *monitor {
	if len(names) == 0 {
		names = []string{defaultTunnelName}
	}
	m := &monitor{
		proxies: map[string]*proxy.Stats{"socks5": new(proxy.Stats), "http": new(proxy.Stats)},
		reconnects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "l2tpproxy_reconnects_total",
			Help: "Tunnels brought up again after the previous one went down, by tunnel and by what ended the previous one.",
		}, []string{"tunnel", "cause"}),
		connectDur: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "l2tpproxy_tunnel_connect_duration_seconds",
			Help:    "Time from the first IKE message to IPCP up, per successful connect (first connect and reconnects), by tunnel.",
			Buckets: []float64{0.25, 0.5, 1, 2, 3, 5, 8, 13, 20, 30},
		}, []string{"tunnel"}),
	}
	for _, n := range names {
		m.tunnels = append(m.tunnels, &tunnelMonitor{
			name:       n,
			reconnects: m.reconnects.MustCurryWith(prometheus.Labels{"tunnel": n}),
			connectDur: m.connectDur.WithLabelValues(n), // a series from the start
			down:       "connecting",
		})
	}
	return m
}

// tunnelNames are the tunnel labels of serveConfig: the tunnels list's
// names, or none (the one tunnel is defaultTunnelName).
func tunnelNames(specs []tunnelSpec) []string {
	var names []string
	for _, s := range specs {
		names = append(names, s.Name)
	}
	return names
}

// tunnel returns the monitor of the named tunnel (nil if there is none).
func (m *monitor) tunnel(name string) *tunnelMonitor {
	if m == nil {
		return nil
	}
	for _, t := range m.tunnels {
		if t.name == name {
			return t
		}
	}
	return nil
}

// only returns the monitor of the one tunnel of a process without a
// tunnels list.
func (m *monitor) only() *tunnelMonitor {
	if m == nil || len(m.tunnels) == 0 {
		return nil
	}
	return m.tunnels[0]
}

// proxyStats returns the counters the named proxy is given.
func (m *monitor) proxyStats(name string) *proxy.Stats {
	if m == nil {
		return nil
	}
	return m.proxies[name]
}

// proxiesListening records that the proxies serve.
func (m *monitor) proxiesListening() {
	if m == nil {
		return
	}
	m.mu.Lock()
	m.listening = true
	m.mu.Unlock()
}

// ready tells whether every tunnel is up and the proxies listen, or why
// not: with one tunnel its state, with several one "NAME: state" line for
// each.
func (m *monitor) ready() (bool, string) {
	m.mu.Lock()
	listening := m.listening
	m.mu.Unlock()
	ok, lines := true, make([]string, 0, len(m.tunnels))
	for _, t := range m.tunnels {
		up, why := t.ready()
		ok = ok && up
		if len(m.tunnels) > 1 {
			why = t.name + ": " + why
		}
		lines = append(lines, why)
	}
	if ok && !listening {
		return false, "proxies not listening yet"
	}
	return ok, strings.Join(lines, "\n")
}

// readyTunnel is ready for the named tunnel alone (and the proxies); known
// is false if there is no such tunnel.
func (m *monitor) readyTunnel(name string) (ok bool, why string, known bool) {
	t := m.tunnel(name)
	if t == nil {
		return false, fmt.Sprintf("no tunnel named %q", name), false
	}
	m.mu.Lock()
	listening := m.listening
	m.mu.Unlock()
	if ok, why = t.ready(); ok && !listening {
		return false, "proxies not listening yet", true
	}
	return ok, why, true
}

// tunnelUp records that c is the tunnel now.
func (t *tunnelMonitor) tunnelUp(c *tunnel.Client) {
	if t == nil {
		return
	}
	t.connectDur.Observe(c.Info().ConnectDur.Seconds())
	t.mu.Lock()
	defer t.mu.Unlock()
	t.cur, t.upSince, t.down = c, time.Now(), ""
}

// tunnelDown records that the current tunnel ended, and why.
func (t *tunnelMonitor) tunnelDown(cause error) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.cur != nil {
		addTunnelStats(&t.ended, t.cur.Stats())
		t.cur = nil
	}
	t.down = "tunnel down: " + oneLine(cause)
}

// reconnected counts a reconnect after cause ended the previous tunnel.
func (t *tunnelMonitor) reconnected(cause error) {
	if t != nil {
		t.reconnects.WithLabelValues(downCause(cause)).Inc()
	}
}

// ready tells whether the tunnel is up, or why not.
func (t *tunnelMonitor) ready() (bool, string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case t.cur == nil:
		return false, t.down
	case isDone(t.cur.Done()):
		return false, "tunnel down: " + errText(t.cur.Err())
	}
	return true, "ok"
}

// current returns the tunnel now (nil while down).
func (t *tunnelMonitor) current() *tunnel.Client {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.cur
}

// snapshot returns the tunnel's counters (those of the ended tunnels plus
// the current one's), whether it is up and since when.
func (t *tunnelMonitor) snapshot() (s tunnel.Stats, up bool, since time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s, since = t.ended, t.upSince
	if t.cur != nil {
		addTunnelStats(&s, t.cur.Stats())
		up = !isDone(t.cur.Done())
	}
	return s, up, since
}

func isDone(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

func errText(err error) string {
	if err == nil {
		return "closed"
	}
	return oneLine(err)
}

// downCause is the label of what ended a tunnel: its failure class.
func downCause(err error) string {
	var te *tunnel.Error
	switch {
	case err == nil:
		return "closed"
	case errors.Is(err, tunnel.ErrServerUnreachable):
		return "unreachable"
	case errors.Is(err, tunnel.ErrIKE):
		return "ike"
	case errors.Is(err, tunnel.ErrL2TP):
		return "l2tp"
	case errors.Is(err, tunnel.ErrPPP):
		return "ppp"
	case errors.As(err, &te):
		return strings.ToLower(te.Layer)
	}
	return "other"
}

func addTunnelStats(sum *tunnel.Stats, s tunnel.Stats) {
	sum.Stats.Add(s.Stats)
	sum.ESPRekeys += s.ESPRekeys
	sum.ESPDeletedByPeer += s.ESPDeletedByPeer
	sum.IKERenewals += s.IKERenewals
	sum.TCP.Add(s.TCP)
}

// Descriptions of the metrics read at scrape time. Those of the tunnels
// carry its name as the label tunnel; the proxies' have none (see monitor).
var (
	descBytes = prometheus.NewDesc("l2tpproxy_bytes_total",
		"Bytes through the tunnel by layer (esp: ESP-in-UDP payloads; l2tp_control: L2TP control messages; ppp: PPP frames in L2TP data messages; ip: the IPv4 packets among them) and direction.",
		[]string{"tunnel", "layer", "direction"}, nil)
	descPackets = prometheus.NewDesc("l2tpproxy_packets_total",
		"Packets through the tunnel by layer and direction (as l2tpproxy_bytes_total).",
		[]string{"tunnel", "layer", "direction"}, nil)
	descDrops = prometheus.NewDesc("l2tpproxy_esp_dropped_packets_total",
		"ESP datagrams from the server dropped on receipt, by reason.",
		[]string{"tunnel", "reason"}, nil)
	descRekeys = prometheus.NewDesc("l2tpproxy_esp_rekeys_total",
		"IPsec SAs that replaced the current one (our rekey at 90% of the lifetime, or one the server started).", []string{"tunnel"}, nil)
	descHolds = prometheus.NewDesc("l2tpproxy_esp_send_holds_total",
		"Times a sender was held because the outbound IPsec SA had reached its byte lifetime or sequence number limit before the new SA took over.", []string{"tunnel"}, nil)
	descHoldSeconds = prometheus.NewDesc("l2tpproxy_esp_send_hold_seconds_total",
		"Time senders were held at an exhausted outbound IPsec SA, in all.", []string{"tunnel"}, nil)
	descSendFailed = prometheus.NewDesc("l2tpproxy_esp_send_failed_packets_total",
		"Packets that could not be sent: no room to seal them, or no new IPsec SA within the hold timeout.", []string{"tunnel"}, nil)
	descESPDeleted = prometheus.NewDesc("l2tpproxy_esp_deleted_by_server_total",
		"IPsec SAs the server deleted.", []string{"tunnel"}, nil)
	descIKERenewals = prometheus.NewDesc("l2tpproxy_ike_renewals_total",
		"IKE SAs negotiated in place after the server deleted the IKE SA but kept the IPsec SA.", []string{"tunnel"}, nil)
	descTCPRetransmits = prometheus.NewDesc("l2tpproxy_tcp_retransmitted_segments_total",
		"TCP segments the tunnel's network stack sent again (any reason), over all its connections.", []string{"tunnel"}, nil)
	descTCPTimeouts = prometheus.NewDesc("l2tpproxy_tcp_timeouts_total",
		"TCP retransmission timeouts (RTO) of the tunnel's network stack.", []string{"tunnel"}, nil)
	descTCPStallProbes = prometheus.NewDesc("l2tpproxy_tcp_stall_probes_total",
		"TCP segments the tunnel's network stack re-sent because a connection with data in flight fell silent (a lost retransmission or tail repaired without waiting for an RTO).", []string{"tunnel"}, nil)
	descUp = prometheus.NewDesc("l2tpproxy_tunnel_up",
		"1 while the tunnel is up, 0 while it is connecting or reconnecting.", []string{"tunnel"}, nil)
	descUptime = prometheus.NewDesc("l2tpproxy_tunnel_uptime_seconds",
		"Seconds since the current tunnel came up (0 while down).", []string{"tunnel"}, nil)
	descConnOpen = prometheus.NewDesc("l2tpproxy_proxy_connections_open",
		"Client connections open now, by proxy.", []string{"proxy"}, nil)
	descConnTotal = prometheus.NewDesc("l2tpproxy_proxy_connections_total",
		"Client connections accepted, by proxy (those refused by --max-connections are not counted here).", []string{"proxy"}, nil)
	descRefused = prometheus.NewDesc("l2tpproxy_proxy_refused_total",
		"Client connections or requests a proxy turned away, by proxy and reason (limit, auth, routes, tunnel_down, dial).",
		[]string{"proxy", "reason"}, nil)
)

// Describe implements prometheus.Collector.
func (m *monitor) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descBytes, descPackets, descDrops, descRekeys, descHolds, descHoldSeconds, descSendFailed, descESPDeleted, descIKERenewals,
		descTCPRetransmits, descTCPTimeouts, descTCPStallProbes, descUp, descUptime, descConnOpen, descConnTotal, descRefused} {
		ch <- d
	}
	m.reconnects.Describe(ch)
	m.connectDur.Describe(ch)
}

// Collect implements prometheus.Collector: the layers' counters as they
// are now.
func (m *monitor) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for _, t := range m.tunnels {
		s, up, since := t.snapshot()
		n := t.name
		for _, l := range []struct {
			layer   string
			in, out datapath.Traffic
		}{{"esp", s.ESPIn, s.ESPOut}, {"l2tp_control", s.L2TPControlIn, s.L2TPControlOut}, {"ppp", s.PPPIn, s.PPPOut}, {"ip", s.IPIn, s.IPOut}} {
			counter(descBytes, l.in.Bytes, n, l.layer, "in")
			counter(descBytes, l.out.Bytes, n, l.layer, "out")
			counter(descPackets, l.in.Packets, n, l.layer, "in")
			counter(descPackets, l.out.Packets, n, l.layer, "out")
		}
		for r := range datapath.NumDropReasons {
			counter(descDrops, s.Drops[r], n, r.String())
		}
		counter(descRekeys, s.ESPRekeys, n)
		counter(descHolds, s.Holds, n)
		ch <- prometheus.MustNewConstMetric(descHoldSeconds, prometheus.CounterValue, s.HoldTime.Seconds(), n)
		counter(descSendFailed, s.SendFailed.Packets, n)
		counter(descESPDeleted, s.ESPDeletedByPeer, n)
		counter(descIKERenewals, s.IKERenewals, n)
		counter(descTCPRetransmits, s.TCP.Retransmits, n)
		counter(descTCPTimeouts, s.TCP.Timeouts, n)
		counter(descTCPStallProbes, s.TCP.StallProbes, n)
		if up {
			gauge(descUp, 1, n)
			gauge(descUptime, time.Since(since).Seconds(), n)
		} else {
			gauge(descUp, 0, n)
			gauge(descUptime, 0, n)
		}
	}
	for name, ps := range m.proxies {
		snap := ps.Snapshot()
		gauge(descConnOpen, float64(snap.Open), name)
		counter(descConnTotal, snap.Accepted, name)
		for r := range proxy.NumRefusals {
			counter(descRefused, snap.Refused[r], name, r.String())
		}
	}
	m.reconnects.Collect(ch)
	m.connectDur.Collect(ch)
}
