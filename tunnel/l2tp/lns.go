package l2tp

import "context"

// LNS is a minimal L2TP network server for in-process tests: it answers one
// LAC's SCCRQ and ICRQ the way xl2tpd does (RFC 2661 §7.2, §7.4.2) and
// keeps the control connection like the LAC does.
type LNS struct{ e *engine }

// NewLNS returns an LNS that writes control packets to tr. Call Run.
func NewLNS(cfg Config, tr Transport) *LNS { return &LNS{e: newEngine(cfg, tr, roleLNS)} }

// HandleControl hands in one received control packet; see LAC.HandleControl.
func (s *LNS) HandleControl(pkt []byte) { s.e.handleControl(pkt) }

// Run serves one tunnel and one session until ctx is cancelled (then CDN
// and StopCCN are sent and nil returned) or the LAC closes (ErrSessionClosed,
// ErrTunnelClosed) or stops answering (ErrTimeout).
func (s *LNS) Run(ctx context.Context) error { return s.e.run(ctx) }

// Events returns TunnelUp (on SCCCN) and SessionUp (on ICCN; Session from
// the LNS's point of view).
func (s *LNS) Events() <-chan Event { return s.e.events }
