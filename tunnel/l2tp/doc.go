// Package l2tp implements the L2TPv2 control protocol (RFC 2661) for an
// L2TP/IPsec client: the wire codec for control and data messages, the LAC
// role (the client: SCCRQ/SCCRP/SCCCN then ICRQ/ICRP/ICCN for one incoming
// call) and a minimal LNS role used by the project's in-process test server.
//
// The package never touches sockets: every packet it writes goes through a
// Transport (the caller adds the UDP and ESP headers), and every control
// packet it reads is handed in with HandleControl. One goroutine (Run) owns
// all control-connection state and selects over received packets and timers
// from an injectable clock.Clock.
//
// Data messages (PPP frames) bypass the control goroutine completely: the
// caller uses IsControl, ParseData and PutDataHeader, which are stateless
// and allocation free.
package l2tp
