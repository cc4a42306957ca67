package ike

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// ErrRemoteID is returned (wrapped) when the server identifies itself in
// phase 1 with another ID than Config.RemoteID.
var ErrRemoteID = errors.New("ike: the server's identity is not the expected one")

// ID_KEY_ID (RFC 2407 §4.6.2.1); the other ID types are in codec.go.
const IDKeyID uint8 = 11

// Identity is a phase-1 identity (RFC 2407 §4.6.2.1): an IPv4 or IPv6
// address, an FQDN, a user@FQDN or an opaque KEY_ID. It is sent in IDii or
// IDir with protocol and port 0 (RFC 2407 §4.6.2: 0/0 or 17/500).
type Identity struct {
	Type uint8
	Data []byte
}

// ParseIdentity reads an identity as strongSwan writes it (strongSwan's
// identification_create_from_string, documented on its IdentityParsing
// page):
//
//	1.2.3.4, ::1         ID_IPV4_ADDR, ID_IPV6_ADDR
//	vpn.example.com      ID_FQDN (no @, not an address)
//	@vpn.example.com     ID_FQDN (a leading @ forces FQDN: no address parsing)
//	user@example.com     ID_USER_FQDN
//	@@user               ID_USER_FQDN (forced)
//	@#6b6579             ID_KEY_ID, hex
//	fqdn:, email:, userfqdn:, ipv4:, ipv6:, keyid:   the type named
//
// keyid:TEXT takes TEXT as bytes, keyid:#HEX hex. Distinguished names
// (ID_DER_ASN1_DN) are not supported.
func ParseIdentity(s string) (Identity, error) {
	if s == "" {
		return Identity{}, fmt.Errorf("%w: empty identity", ErrConfig)
	}
	if len(s) > 255 {
		return Identity{}, fmt.Errorf("%w: identity longer than 255 bytes", ErrConfig)
	}
	if i := strings.IndexByte(s, ':'); i > 0 {
		if id, ok, err := parsePrefixedIdentity(s[:i], s[i+1:]); ok {
			return id, err
		}
	}
	switch {
	case strings.HasPrefix(s, "@#"):
		return keyIDHex(s[2:])
	case strings.HasPrefix(s, "@@"):
		return textIdentity(IDUserFQDN, s[2:])
	case strings.HasPrefix(s, "@"):
		return textIdentity(IDFQDN, s[1:])
	case strings.Contains(s, "@"):
		return textIdentity(IDUserFQDN, s)
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return addrIdentity(a), nil
	}
	if strings.ContainsAny(s, "=,") {
		return Identity{}, fmt.Errorf("%w: identity %q looks like a distinguished name, which is not supported (use an address, FQDN, user@FQDN or @#hex KEY_ID)", ErrConfig, s)
	}
	return textIdentity(IDFQDN, s)
}

func parsePrefixedIdentity(prefix, v string) (Identity, bool, error) {
	var id Identity
	var err error
	switch strings.ToLower(prefix) {
	case "fqdn":
		id, err = textIdentity(IDFQDN, v)
	case "email", "userfqdn", "rfc822":
		id, err = textIdentity(IDUserFQDN, v)
	case "keyid":
		if strings.HasPrefix(v, "#") {
			id, err = keyIDHex(v[1:])
		} else {
			id, err = textIdentity(IDKeyID, v)
		}
	case "ipv4", "ipv6":
		a, perr := netip.ParseAddr(v)
		if perr != nil || a.Is4() != (strings.ToLower(prefix) == "ipv4") {
			return Identity{}, true, fmt.Errorf("%w: %q is not an %s address", ErrConfig, v, strings.ToUpper(prefix[:2])+prefix[2:])
		}
		id = addrIdentity(a)
	default:
		return Identity{}, false, nil // an IPv6 address, or a name with a colon
	}
	return id, true, err
}

func textIdentity(t uint8, v string) (Identity, error) {
	if v == "" {
		return Identity{}, fmt.Errorf("%w: empty identity", ErrConfig)
	}
	return Identity{Type: t, Data: []byte(v)}, nil
}

func keyIDHex(h string) (Identity, error) {
	b, err := hex.DecodeString(h)
	if err != nil || len(b) == 0 {
		return Identity{}, fmt.Errorf("%w: KEY_ID @#%s is not hex", ErrConfig, h)
	}
	return Identity{Type: IDKeyID, Data: b}, nil
}

func addrIdentity(a netip.Addr) Identity {
	a = a.Unmap()
	t := IDIPv4Addr
	if a.Is6() {
		t = IDIPv6Addr
	}
	return Identity{Type: t, Data: a.AsSlice()}
}

// String writes the identity as ParseIdentity reads it back: addresses and
// user@FQDN as they are, an FQDN with a leading @ (so that one made of
// digits and dots is not read as an address), a KEY_ID as @#hex.
func (id Identity) String() string {
	switch id.Type {
	case IDIPv4Addr, IDIPv6Addr:
		if a, ok := netip.AddrFromSlice(id.Data); ok {
			return a.String()
		}
	case IDFQDN:
		return "@" + printable(id.Data)
	case IDUserFQDN:
		if bytes.IndexByte(id.Data, '@') > 0 {
			return printable(id.Data)
		}
		return "@@" + printable(id.Data)
	case IDKeyID:
		return "@#" + hex.EncodeToString(id.Data)
	}
	return fmt.Sprintf("ID type %d %x", id.Type, id.Data)
}

// printable quotes text an untrusted peer sent if it holds anything but
// printable ASCII, so it cannot forge log lines or terminal escapes.
func printable(b []byte) string {
	for _, c := range b {
		if c < 0x21 || c > 0x7e {
			return fmt.Sprintf("%q", b)
		}
	}
	return string(b)
}

// Equal reports whether two identities are the same; FQDN and user@FQDN
// compare without regard to ASCII case (DNS names are case-insensitive).
func (id Identity) Equal(o Identity) bool {
	if id.Type != o.Type {
		return false
	}
	if id.Type == IDFQDN || id.Type == IDUserFQDN {
		return bytes.EqualFold(id.Data, o.Data)
	}
	return bytes.Equal(id.Data, o.Data)
}

// payload is the ID payload body: type, protocol 0, port 0, data.
func (id Identity) payload() []byte { return ID{Type: id.Type, Data: id.Data}.encode() }

// identityOf reads an ID payload body the peer sent.
func identityOf(body []byte) (Identity, error) {
	id, err := ParseID(body)
	if err != nil {
		return Identity{}, err
	}
	return Identity{Type: id.Type, Data: id.Data}, nil
}

// ownIDPayload is our IDii/IDir body: the configured identity, or the
// address of our socket as we see it (ID_IPV4_ADDR, NOTES §1.6).
func (r *runner) ownIDPayload() []byte {
	if r.localID != nil {
		return r.localID.payload()
	}
	return idFor(r.local, 0, 0).encode()
}

// checkPeerID compares the peer's ID payload with the expected identity,
// if one is configured.
func (r *runner) checkPeerID(body []byte, msg string) error {
	got, err := identityOf(body)
	if err != nil {
		return fmt.Errorf("%w: %s ID payload: %v", ErrAuthFailed, msg, err)
	}
	if r.remoteID == nil || r.remoteID.Equal(got) {
		return nil
	}
	return fmt.Errorf("%w: the server identifies as %s in %s, expected %s", ErrRemoteID, got, msg, *r.remoteID)
}
