package ike

import (
	"io"

	"github.com/l2tpproxy/l2tpproxy/crypto/modp"
)

// dhKey is our half of one Diffie-Hellman exchange: the Main Mode KE
// (RFC 2409 §5) or a Quick Mode's PFS KE (§5.5).
type dhKey interface {
	Public() []byte                           // g^x, padded to the group's length
	SharedSecret(peer []byte) ([]byte, error) // g^xy, padded (NOTES §1.2)
}

// newDHKey makes a key in the group with the given IKE group number. It is
// the one place phase 1 and phase 2 create Diffie-Hellman keys.
func newDHKey(group uint16, rnd io.Reader) (dhKey, error) {
	g, err := modp.ByID(group)
	if err != nil {
		return nil, err
	}
	return g.GenerateKey(rnd)
}

// dhPublicLen is the length of a KE payload body in the group (RFC 2409
// §5: the public value padded to the group's length).
func dhPublicLen(group uint16) (int, error) {
	g, err := modp.ByID(group)
	if err != nil {
		return 0, err
	}
	return g.Len(), nil
}
