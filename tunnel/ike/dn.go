package ike

import (
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"slices"
	"strings"
)

// dnAttrs are the attribute names a DN may be written with, as strongSwan
// and OpenSSL write them (RFC 4514 §3 plus E, the PKCS#9 e-mail address).
var dnAttrs = map[string]string{
	"C": "2.5.4.6", "O": "2.5.4.10", "OU": "2.5.4.11", "CN": "2.5.4.3", "L": "2.5.4.7",
	"ST": "2.5.4.8", "S": "2.5.4.8", "STREET": "2.5.4.9", "SN": "2.5.4.4", "SERIALNUMBER": "2.5.4.5",
	"DC": "0.9.2342.19200300.100.1.25", "UID": "0.9.2342.19200300.100.1.1",
	"E": "1.2.840.113549.1.9.1", "EMAIL": "1.2.840.113549.1.9.1", "EMAILADDRESS": "1.2.840.113549.1.9.1",
	"T": "2.5.4.12", "TITLE": "2.5.4.12", "GN": "2.5.4.42",
}

type dnPart struct{ oid, value string }

// parseDN reads a distinguished name as a user writes it: strongSwan's
// "C=CH, O=Example, CN=vpn.example.com", RFC 4514's "CN=vpn,O=Example,C=CH"
// or OpenSSL's "/C=CH/O=Example/CN=vpn". A comma can be escaped as "\,".
func parseDN(s string) ([]dnPart, error) {
	sep := ','
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "/") {
		sep, s = '/', s[1:]
	}
	var parts []dnPart
	var cur strings.Builder
	flush := func() error {
		f := strings.TrimSpace(cur.String())
		cur.Reset()
		if f == "" {
			return nil
		}
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			return fmt.Errorf("%q is not TYPE=value", f)
		}
		k = strings.ToUpper(strings.TrimSpace(k))
		oid, known := dnAttrs[k]
		if !known {
			if _, err := parseOID(k); err != nil {
				return fmt.Errorf("unknown DN attribute %q", k)
			}
			oid = k
		}
		parts = append(parts, dnPart{oid: oid, value: strings.TrimSpace(v)})
		return nil
	}
	esc := false
	for _, c := range s {
		switch {
		case esc:
			cur.WriteRune(c)
			esc = false
		case c == '\\':
			esc = true
		case c == sep:
			if err := flush(); err != nil {
				return nil, err
			}
		default:
			cur.WriteRune(c)
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	if len(parts) == 0 {
		return nil, fmt.Errorf("empty DN")
	}
	return parts, nil
}

func parseOID(s string) (asn1.ObjectIdentifier, error) {
	var oid asn1.ObjectIdentifier
	for _, f := range strings.Split(s, ".") {
		n := 0
		if f == "" {
			return nil, fmt.Errorf("bad OID")
		}
		for _, c := range f {
			if c < '0' || c > '9' {
				return nil, fmt.Errorf("bad OID")
			}
			n = n*10 + int(c-'0')
		}
		oid = append(oid, n)
	}
	if len(oid) < 2 {
		return nil, fmt.Errorf("bad OID")
	}
	return oid, nil
}

// dnEqual reports whether want names the subject of c: the same attributes
// with the same values (attribute names case-insensitive, values exact).
// The order is not compared: strongSwan writes DNs most significant first,
// Go and RFC 4514 the reverse, and users copy either.
func dnEqual(want string, c *x509.Certificate) (bool, error) {
	w, err := parseDN(want)
	if err != nil {
		return false, err
	}
	var have []dnPart
	for _, a := range c.Subject.Names {
		have = append(have, dnPart{oid: a.Type.String(), value: fmt.Sprint(a.Value)})
	}
	cmp := func(a, b dnPart) int {
		if a.oid != b.oid {
			return strings.Compare(a.oid, b.oid)
		}
		return strings.Compare(a.value, b.value)
	}
	slices.SortFunc(w, cmp)
	slices.SortFunc(have, cmp)
	return slices.Equal(w, have), nil
}
