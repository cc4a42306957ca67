package ike

import (
	"io"

	"github.com/l2tpproxy/l2tpproxy/crypto/dh"
)

// dhKey is our half of one Diffie-Hellman exchange: the Main Mode KE
// (RFC 2409 §5) or a Quick Mode's PFS KE (§5.5), in a MODP (RFC 3526) or
// ECP (RFC 5903) group.
type dhKey = dh.PrivateKey

// newDHKey makes a key in the group with the given IKE group number. It is
// the one place phase 1 and phase 2 create Diffie-Hellman keys.
func newDHKey(group uint16, rnd io.Reader) (dhKey, error) {
	g, err := dh.ByID(group)
	if err != nil {
		return nil, err
	}
	return g.GenerateKey(rnd)
}

// dhPublicLen is the length of a KE payload body in the group (RFC 2409
// §5: the MODP public value padded to the group's length; RFC 5903 §7: the
// ECP point as x | y).
func dhPublicLen(group uint16) (int, error) {
	g, err := dh.ByID(group)
	if err != nil {
		return 0, err
	}
	return g.PublicLen(), nil
}
