package main

import (
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/l2tpproxy/l2tpproxy/proxy"
	"github.com/l2tpproxy/l2tpproxy/tunnel"
	"github.com/l2tpproxy/l2tpproxy/tunnel/datapath"
)

// monitor follows serve (which tunnel is up, since when, why it went down,
// whether the proxies listen) and is the Prometheus collector of the admin
// endpoint. The layers keep their own counters (atomics, read by Stats at
// scrape time); the monitor adds the counts of the tunnels that have ended
// so that the totals never go back across reconnects. A nil *monitor does
// nothing.
type monitor struct {
	mu        sync.Mutex
	cur       *tunnel.Client // nil while down
	upSince   time.Time
	ended     tunnel.Stats // sum over the tunnels that have ended
	listening bool
	down      string // why the tunnel is down ("" while up)

	proxies    map[string]*proxy.Stats // by proxy: socks5, http
	reconnects *prometheus.CounterVec
	connectDur prometheus.Histogram
}

func newMonitor() *monitor {
	return &monitor{
		down:    "connecting",
		proxies: map[string]*proxy.Stats{"socks5": new(proxy.Stats), "http": new(proxy.Stats)},
		reconnects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "l2tpproxy_reconnects_total",
			Help: "Tunnels brought up again after the previous one went down, by what ended the previous one.",
		}, []string{"cause"}),
		connectDur: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "l2tpproxy_tunnel_connect_duration_seconds",
			Help:    "Time from the first IKE message to IPCP up, per successful connect (first connect and reconnects).",
			Buckets: []float64{0.25, 0.5, 1, 2, 3, 5, 8, 13, 20, 30},
		}),
	}
}

// proxyStats returns the counters the named proxy is given.
func (m *monitor) proxyStats(name string) *proxy.Stats {
	if m == nil {
		return nil
	}
	return m.proxies[name]
}

// tunnelUp records that c is the tunnel now.
func (m *monitor) tunnelUp(c *tunnel.Client) {
	if m == nil {
		return
	}
	m.connectDur.Observe(c.Info().ConnectDur.Seconds())
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cur, m.upSince, m.down = c, time.Now(), ""
}

// tunnelDown records that the current tunnel ended, and why.
func (m *monitor) tunnelDown(cause error) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cur != nil {
		addTunnelStats(&m.ended, m.cur.Stats())
		m.cur = nil
	}
	m.down = "tunnel down: " + oneLine(cause)
}

// reconnected counts a reconnect after cause ended the previous tunnel.
func (m *monitor) reconnected(cause error) {
	if m != nil {
		m.reconnects.WithLabelValues(downCause(cause)).Inc()
	}
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

// ready tells whether the tunnel is up and the proxies listen, or why not.
func (m *monitor) ready() (bool, string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case m.cur == nil:
		return false, m.down
	case isDone(m.cur.Done()):
		return false, "tunnel down: " + errText(m.cur.Err())
	case !m.listening:
		return false, "proxies not listening yet"
	}
	return true, "ok"
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
}

// Descriptions of the metrics read at scrape time.
var (
	descBytes = prometheus.NewDesc("l2tpproxy_bytes_total",
		"Bytes through the tunnel by layer (esp: ESP-in-UDP payloads; l2tp_control: L2TP control messages; ppp: PPP frames in L2TP data messages; ip: the IPv4 packets among them) and direction.",
		[]string{"layer", "direction"}, nil)
	descPackets = prometheus.NewDesc("l2tpproxy_packets_total",
		"Packets through the tunnel by layer and direction (as l2tpproxy_bytes_total).",
		[]string{"layer", "direction"}, nil)
	descDrops = prometheus.NewDesc("l2tpproxy_esp_dropped_packets_total",
		"ESP datagrams from the server dropped on receipt, by reason.",
		[]string{"reason"}, nil)
	descRekeys = prometheus.NewDesc("l2tpproxy_esp_rekeys_total",
		"IPsec SAs that replaced the current one (our rekey at 90% of the lifetime, or one the server started).", nil, nil)
	descESPDeleted = prometheus.NewDesc("l2tpproxy_esp_deleted_by_server_total",
		"IPsec SAs the server deleted.", nil, nil)
	descIKERenewals = prometheus.NewDesc("l2tpproxy_ike_renewals_total",
		"IKE SAs negotiated in place after the server deleted the IKE SA but kept the IPsec SA.", nil, nil)
	descUp = prometheus.NewDesc("l2tpproxy_tunnel_up",
		"1 while the tunnel is up, 0 while it is connecting or reconnecting.", nil, nil)
	descUptime = prometheus.NewDesc("l2tpproxy_tunnel_uptime_seconds",
		"Seconds since the current tunnel came up (0 while down).", nil, nil)
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
	for _, d := range []*prometheus.Desc{descBytes, descPackets, descDrops, descRekeys, descESPDeleted, descIKERenewals,
		descUp, descUptime, descConnOpen, descConnTotal, descRefused} {
		ch <- d
	}
	m.reconnects.Describe(ch)
	m.connectDur.Describe(ch)
}

// Collect implements prometheus.Collector: the layers' counters as they
// are now.
func (m *monitor) Collect(ch chan<- prometheus.Metric) {
	m.mu.Lock()
	s := m.ended
	up, since := m.cur != nil, m.upSince
	if m.cur != nil {
		addTunnelStats(&s, m.cur.Stats())
		up = !isDone(m.cur.Done())
	}
	m.mu.Unlock()

	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for _, l := range []struct {
		layer   string
		in, out datapath.Traffic
	}{{"esp", s.ESPIn, s.ESPOut}, {"l2tp_control", s.L2TPControlIn, s.L2TPControlOut}, {"ppp", s.PPPIn, s.PPPOut}, {"ip", s.IPIn, s.IPOut}} {
		counter(descBytes, l.in.Bytes, l.layer, "in")
		counter(descBytes, l.out.Bytes, l.layer, "out")
		counter(descPackets, l.in.Packets, l.layer, "in")
		counter(descPackets, l.out.Packets, l.layer, "out")
	}
	for r := range datapath.NumDropReasons {
		counter(descDrops, s.Drops[r], r.String())
	}
	counter(descRekeys, s.ESPRekeys)
	counter(descESPDeleted, s.ESPDeletedByPeer)
	counter(descIKERenewals, s.IKERenewals)
	if up {
		gauge(descUp, 1)
		gauge(descUptime, time.Since(since).Seconds())
	} else {
		gauge(descUp, 0)
		gauge(descUptime, 0)
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
