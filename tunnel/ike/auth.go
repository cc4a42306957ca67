package ike

import (
	"crypto/hmac"
	"fmt"

	"github.com/l2tpproxy/l2tpproxy/crypto/ikev1"
)

// phase1Proof is what a phase-1 authenticator binds together (RFC 2409 §5):
// both Diffie-Hellman public values, the cookies, the initiator's SA body as
// sent (SAi_b) and the sender's ID payload body.
type phase1Proof struct {
	suite      ikev1.Suite
	skeyid     []byte
	gxi, gxr   []byte
	ckyI, ckyR []byte
	saiB       []byte
}

// Authenticator is a phase-1 authentication method, called by Main Mode in
// both roles (and by Aggressive Mode later). PSK is the only one today; RSA
// signatures (RFC 2409 §5.1) will derive SKEYID from the nonces and g^xy and
// put a SIG payload where PSK puts a HASH.
type Authenticator interface {
	// SKEYID derives the phase-1 root key (RFC 2409 §5: it depends on the
	// method).
	SKEYID(s ikev1.Suite, ni, nr, gxy []byte) []byte
	// Proof returns the payload that proves our identity idB: its type and
	// body. initiator tells which of HASH_I and HASH_R we are.
	Proof(p phase1Proof, initiator bool, idB []byte) (payloadType uint8, body []byte)
	// Verify checks the peer's proof for its ID body idB among its
	// payloads; peerInitiator is the peer's role.
	Verify(p phase1Proof, peerInitiator bool, idB []byte, payloads []Payload) error
}

// pskAuth authenticates with a pre-shared key (RFC 2409 §5.4):
// SKEYID = prf(PSK, Ni_b | Nr_b), and the proof is HASH_I or HASH_R.
type pskAuth struct{ psk []byte }

func newPSKAuth(psk []byte) (*pskAuth, error) {
	if len(psk) == 0 {
		return nil, fmt.Errorf("%w: empty PSK", ErrConfig)
	}
	return &pskAuth{psk: append([]byte(nil), psk...)}, nil
}

func (a *pskAuth) SKEYID(s ikev1.Suite, ni, nr, _ []byte) []byte { return s.SKEYIDPSK(a.psk, ni, nr) }

func (a *pskAuth) hash(p phase1Proof, initiator bool, idB []byte) []byte {
	if initiator {
		return p.suite.HashI(p.skeyid, p.gxi, p.gxr, p.ckyI, p.ckyR, p.saiB, idB)
	}
	return p.suite.HashR(p.skeyid, p.gxi, p.gxr, p.ckyI, p.ckyR, p.saiB, idB)
}

func (a *pskAuth) Proof(p phase1Proof, initiator bool, idB []byte) (uint8, []byte) {
	return PayloadHash, a.hash(p, initiator, idB)
}

func (a *pskAuth) Verify(p phase1Proof, peerInitiator bool, idB []byte, payloads []Payload) error {
	h := First(payloads, PayloadHash)
	if h == nil {
		return fmt.Errorf("%w: no HASH payload", ErrAuthFailed)
	}
	if !hmac.Equal(h.Body, a.hash(p, peerInitiator, idB)) {
		name := "HASH_R"
		if peerInitiator {
			name = "HASH_I"
		}
		return fmt.Errorf("%w: %s does not verify", ErrAuthFailed, name)
	}
	return nil
}
