// What each layer's failure tells the user to check: the *Error values, with
// class, layer and hint, that Dial and Err return.

package tunnel

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/l2tpproxy/l2tpproxy/tunnel/ike"
	"github.com/l2tpproxy/l2tpproxy/tunnel/l2tp"
	"github.com/l2tpproxy/l2tpproxy/tunnel/ppp"
)

func timeoutError(layer string, class error, ctx context.Context) error {
	return &Error{Class: class, Layer: layer, Err: fmt.Errorf("not established in time: %w", context.Cause(ctx)),
		Hint: "the server stopped answering during setup"}
}

// layerError is the Error of a layer that ended with err (ErrClosed when it
// gave none), before its hint is chosen.
func layerError(class error, layer string, err error) *Error {
	if err == nil {
		err = ErrClosed
	}
	return &Error{Class: class, Layer: layer, Err: err}
}

func ikeError(err error, server netip.AddrPort) error {
	e := layerError(ErrIKE, "IKE", err)
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
	e := layerError(ErrL2TP, "L2TP", err)
	switch {
	case errors.Is(err, l2tp.ErrTimeout):
		e.Hint = "IPsec is up but the L2TP server does not answer: check that the server runs an L2TP service (xl2tpd) for IPsec clients"
	case errors.Is(err, l2tp.ErrTunnelClosed), errors.Is(err, l2tp.ErrSessionClosed):
		e.Hint = "the server closed the L2TP connection"
	}
	return e
}

func pppError(err error) error {
	e := layerError(ErrPPP, "PPP", err)
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
