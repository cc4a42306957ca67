package l2tp

import "context"

// LAC is the client side of one L2TP tunnel with one incoming call
// (RFC 2661 §7.2, §7.4.1).
type LAC struct{ e *engine }

// NewLAC returns a LAC that writes control packets to tr. Call Run.
func NewLAC(cfg Config, tr Transport) *LAC { return &LAC{e: newEngine(cfg, tr, roleLAC)} }

// HandleControl hands in one received control packet (T=1); ownership of
// pkt is transferred. It never blocks: when the bounded queue is full the
// packet is dropped (the peer retransmits).
func (c *LAC) HandleControl(pkt []byte) { c.e.handleControl(pkt) }

// Run establishes the tunnel (SCCRQ/SCCRP/SCCCN) and one session
// (ICRQ/ICRP/ICCN), emitting TunnelUp and SessionUp, then keeps the control
// connection alive (reliable delivery, HELLO) until ctx is cancelled or the
// peer closes. On cancellation it sends CDN and StopCCN, waits up to ~2 s
// for their acknowledgement and returns nil; cancelled with the cause
// ErrPeerUnreachable, it returns nil at once. Otherwise it returns an error
// wrapping ErrTimeout, ErrTunnelClosed, ErrSessionClosed, ErrMalformed or
// ErrProtocol. Run must be called once.
func (c *LAC) Run(ctx context.Context) error { return c.e.run(ctx) }

// Events returns the buffered channel of TunnelUp and SessionUp events.
func (c *LAC) Events() <-chan Event { return c.e.events }
