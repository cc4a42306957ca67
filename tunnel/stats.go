package tunnel

import (
	"sync/atomic"

	"github.com/l2tpproxy/l2tpproxy/netstack"
	"github.com/l2tpproxy/l2tpproxy/tunnel/datapath"
)

// Stats is a snapshot of a tunnel's counters, for monitoring: the data
// path's per layer, and the control events supervise has seen since the
// tunnel came up.
type Stats struct {
	datapath.Stats
	// ESPRekeys counts IPsec SAs that replaced the current one (a Quick
	// Mode of ours at 90% of its lifetime, or one the server started).
	ESPRekeys uint64
	// ESPDeletedByPeer counts IPsec SAs the server deleted.
	ESPDeletedByPeer uint64
	// IKERenewals counts IKE SAs negotiated in place after the server
	// deleted the IKE SA but kept the IPsec SA.
	IKERenewals uint64
	// TCP is what the tunnel's network stack counted for its TCP
	// connections: how they recovered from loss.
	TCP netstack.TCPStats
}

// controlCounters are the counters supervise keeps.
type controlCounters struct {
	espRekeys, espDeleted, ikeRenewals atomic.Uint64
}

// Stats returns the tunnel's counters. Safe to call at any time, also
// after the tunnel has gone down (its final counts).
func (c *Client) Stats() Stats {
	return Stats{
		Stats:            c.data.Stats(),
		ESPRekeys:        c.counters.espRekeys.Load(),
		ESPDeletedByPeer: c.counters.espDeleted.Load(),
		IKERenewals:      c.counters.ikeRenewals.Load(),
		TCP:              c.Stack().TCPStats(),
	}
}
