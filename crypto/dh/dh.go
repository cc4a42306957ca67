// Package dh is the Diffie-Hellman abstraction IKEv1 phase 1 and Quick Mode
// PFS share: a Group by its IKE number (RFC 2409 Appendix A, IANA "Transform
// Type 4 - Key Exchange Method"), an ephemeral PrivateKey, the public value
// as the KE payload carries it, and the shared secret g^xy as the key
// derivation hashes it (RFC 2409 §5, §5.5).
//
// MODP groups 2, 5, 14, 15 and 16 come from crypto/modp (values padded to the
// modulus length); the random ECP groups 19, 20 and 21 of RFC 5903 use the
// standard library's crypto/ecdh (KE = x | y, shared secret = x).
package dh

import (
	"errors"
	"fmt"
	"io"

	"github.com/l2tpproxy/l2tpproxy/crypto/modp"
)

// ErrUnknownGroup is returned for a group number not implemented here.
var ErrUnknownGroup = errors.New("dh: unsupported group")

// ErrInvalidPublicValue is returned when a peer's KE value is malformed,
// off the curve or out of range.
var ErrInvalidPublicValue = errors.New("dh: invalid peer public value")

// Group is one Diffie-Hellman group.
type Group interface {
	// ID is the IKE group number (Group Description attribute).
	ID() uint16
	// String names the group as logs print it, e.g. "MODP2048", "ECP256".
	String() string
	// PublicLen is the exact length of a KE payload body in this group.
	PublicLen() int
	// GenerateKey makes an ephemeral key from rand.
	GenerateKey(rand io.Reader) (PrivateKey, error)
}

// PrivateKey is one side's ephemeral key.
type PrivateKey interface {
	Group() Group
	// Public is the KE payload body (PublicLen bytes). Callers must not modify it.
	Public() []byte
	// SharedSecret is g^xy as RFC 2409 §5 hashes it. The peer value must be
	// exactly PublicLen bytes and a valid group element.
	SharedSecret(peerPublic []byte) ([]byte, error)
}

// IDs lists the implemented groups, weakest first.
var IDs = []uint16{2, 5, 14, 15, 16, 19, 20, 21}

// ByID returns the group with IKE number id.
func ByID(id uint16) (Group, error) {
	switch id {
	case 19, 20, 21:
		return ecpGroups[id], nil
	}
	g, err := modp.ByID(id)
	if err != nil {
		return nil, fmt.Errorf("%w %d", ErrUnknownGroup, id)
	}
	return modpGroup{g}, nil
}

// Name returns the group's name for id, or "group#N" for an unknown one.
func Name(id uint16) string {
	g, err := ByID(id)
	if err != nil {
		return fmt.Sprintf("group#%d", id)
	}
	return g.String()
}

// ---- MODP adapter ----

type modpGroup struct{ g *modp.Group }

func (m modpGroup) ID() uint16     { return m.g.ID }
func (m modpGroup) String() string { return m.g.String() }
func (m modpGroup) PublicLen() int { return m.g.Len() }

func (m modpGroup) GenerateKey(rand io.Reader) (PrivateKey, error) {
	k, err := m.g.GenerateKey(rand)
	if err != nil {
		return nil, err
	}
	return modpKey{m, k}, nil
}

type modpKey struct {
	grp modpGroup
	k   *modp.PrivateKey
}

func (k modpKey) Group() Group   { return k.grp }
func (k modpKey) Public() []byte { return k.k.Public() }

func (k modpKey) SharedSecret(peer []byte) ([]byte, error) {
	if len(peer) != k.grp.PublicLen() {
		return nil, fmt.Errorf("%w: %d bytes, want %d", ErrInvalidPublicValue, len(peer), k.grp.PublicLen())
	}
	s, err := k.k.SharedSecret(peer)
	if errors.Is(err, modp.ErrInvalidPublicValue) {
		return nil, fmt.Errorf("%w: %v", ErrInvalidPublicValue, err)
	}
	return s, err
}
