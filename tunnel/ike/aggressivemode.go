package ike

import (
	"bytes"
	"fmt"
	"log/slog"
	"sync"
)

// Mode is the phase-1 exchange: Main Mode (Identity Protection) or
// Aggressive Mode (RFC 2409 §5).
type Mode uint8

const (
	// ModeMain is Main Mode, six messages, identities encrypted (RFC 2409
	// §5, the default, as Windows, macOS and iOS use for L2TP/IPsec).
	ModeMain Mode = iota
	// ModeAggressive is Aggressive Mode, three messages (RFC 2409 §5.4):
	// the identities travel in clear and the responder's HASH_R, sent
	// before the initiator proved anything, lets an eavesdropper (or
	// anyone who sends an AM1) guess the pre-shared key offline.
	ModeAggressive
)

func (m Mode) String() string {
	switch m {
	case ModeMain:
		return "main"
	case ModeAggressive:
		return "aggressive"
	}
	return fmt.Sprintf("Mode(%d)", uint8(m))
}

// ParseMode reads "main" or "aggressive".
func ParseMode(s string) (Mode, bool) {
	for _, m := range []Mode{ModeMain, ModeAggressive} {
		if m.String() == s {
			return m, true
		}
	}
	return 0, false
}

// aggressiveWarning makes the offline-guessing warning appear once per
// process, however often the client reconnects.
var aggressiveWarning sync.Once

func warnAggressive(log *slog.Logger) {
	aggressiveWarning.Do(func() {
		log.Warn("IKE Aggressive Mode with a pre-shared key: the server's HASH_R is sent before we authenticate, so anyone who sees it (or asks the server for one) can guess the PSK offline; use a long random PSK, or Main Mode if the server allows it (RFC 2409 §5.4)")
	})
}

// aggressiveOffer is the rule for the Aggressive Mode offer: AM1 already
// carries our KE, so the group of the Diffie-Hellman exchange cannot be
// negotiated (RFC 2409 §5) and every transform must use it. We offer the
// transforms of the first transform's group, in their order: MODP2048 for
// the default list, the 7 transforms of DefaultPhase1 with group 14.
func aggressiveOffer(offer []Phase1Transform) []Phase1Transform {
	if len(offer) == 0 {
		return nil
	}
	g := offer[0].Group
	var out []Phase1Transform
	for _, t := range offer {
		if t.Group == g {
			out = append(out, t)
		}
	}
	return out
}

type amState int

const (
	amIdle   amState = iota // responder: waiting for AM1
	amI1Sent                // initiator: AM1 out, waiting for AM2
	amR2Sent                // responder: AM2 out, waiting for AM3
	amDone                  // either role
)

// aggressiveMode is the Aggressive Mode exchange of one ISAKMP SA with a
// pre-shared key (RFC 2409 §5.4) and NAT-T (RFC 3947 §3, §4):
//
//	AM1 I->R  HDR, SA, KE, Ni, IDii, VIDs
//	AM2 R->I  HDR, SA, KE, Nr, IDir, HASH_R, VIDs, NAT-D, NAT-D
//	AM3 I->R  HDR*, HASH_I, NAT-D, NAT-D      (to port 4500, non-ESP marker)
//
// The key material and HASH_I/HASH_R are the same as in Main Mode, so it
// reuses mainMode's key schedule (choose, deriveKeys, proof, established);
// only the message flow differs. AM3 is encrypted as Libreswan sends it
// (strongSwan sends it in clear; the responder here accepts both). Its
// last cipher block is then the phase-2 IV base (RFC 2409 Appendix B).
type aggressiveMode struct {
	mainMode // keys, nonces, SAi_b, lastIn/lastOut; its state stays unused
	state    amState
	idI      []byte // IDii body as sent in AM1 (HASH_I covers it)
	// clearAM3 sends AM3 unencrypted, as strongSwan does (tests use it
	// to check that the responder takes both forms).
	clearAM3 bool
}

// startPhase1 starts the configured phase-1 exchange as initiator.
func (r *runner) startPhase1() (*ikeSA, error) {
	if r.mode == ModeAggressive {
		return r.startAggressiveMode()
	}
	return r.startMainMode()
}

// process consumes one Aggressive Mode message for sa.
func (am *aggressiveMode) process(sa *ikeSA, m *Message, raw []byte) error {
	if am.lastIn != nil && bytes.Equal(raw, am.lastIn) {
		// A retransmission of the peer's last message: resend our answer
		// (the initiator's AM3 when AM2 comes again: AM3 was lost).
		if am.lastOut != nil {
			sa.write(am.lastOut, sa.floated)
		}
		return nil
	}
	enc := m.Flags&FlagEncryption != 0
	switch am.state {
	case amI1Sent:
		if enc || m.RCookie == ([8]byte{}) {
			return nil
		}
		return am.onAM2(sa, m, raw)
	case amIdle:
		if enc || m.RCookie != ([8]byte{}) {
			return nil
		}
		return am.onAM1(sa, m, raw)
	case amR2Sent:
		if m.ICookie != sa.ckyI || m.RCookie != sa.ckyR {
			return nil
		}
		return am.onAM3(sa, m, raw)
	}
	return nil
}

// natdPair returns the two NAT-D payload bodies RFC 3947 §3.2 puts in AM2
// and AM3: first the hash of the receiver's address and port, then the
// sender's. The sender's is random, so the receiver always sees a NAT
// and both sides move to UDP encapsulation (strongSwan's forceencaps):
// the initiator fakes its own (it cannot send ESP unencapsulated), the
// responder the initiator's (as SoftEther does).
func (sa *ikeSA) natdPair() ([]byte, []byte, error) {
	fake, err := sa.r.random(sa.suite.Size())
	if err != nil {
		return nil, nil, err
	}
	if sa.initiator {
		return sa.suite.NATD(sa.ckyI[:], sa.ckyR[:], sa.r.remote), fake, nil
	}
	return fake, sa.suite.NATD(sa.ckyI[:], sa.ckyR[:], sa.r.local), nil
}

// setIdentities checks and keeps the phase-1 mode and identities.
func (r *runner) setIdentities(mode Mode, local, remote *Identity) error {
	switch mode {
	case ModeMain, ModeAggressive:
	default:
		return fmt.Errorf("%w: unknown phase-1 mode %d", ErrConfig, mode)
	}
	for _, id := range []*Identity{local, remote} {
		if id != nil && (len(id.Data) == 0 || len(id.Data) > 255) {
			return fmt.Errorf("%w: identity of %d bytes", ErrConfig, len(id.Data))
		}
	}
	r.mode, r.localID, r.remoteID = mode, local, remote
	return nil
}
