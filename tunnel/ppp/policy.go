package ppp

import (
	"errors"
	"fmt"
	"strings"
)

// AuthPolicy is the set of authentication methods the client agrees to use
// (--ppp-auth). The server chooses (RFC 1661 §6.2: its Auth-Protocol option
// says how we must authenticate); we accept any method in the policy and
// Configure-Nak the others toward the strongest allowed one.
type AuthPolicy uint8

// The methods an AuthPolicy can allow.
const (
	AllowPAP      AuthPolicy = 1 << iota // PAP (RFC 1334): the password in clear
	AllowCHAP                            // CHAP-MD5 (RFC 1994)
	AllowMSCHAPv2                        // MS-CHAPv2 (RFC 2759)
	AllowEAP                             // EAP (RFC 3748) with EAP-MSCHAPv2 or EAP-MD5

	allowAll = AllowPAP | AllowCHAP | AllowMSCHAPv2 | AllowEAP
)

// DefaultAuthPolicy is everything but PAP, as Windows does: PAP would hand
// the password in clear to anyone who holds the (often public) group PSK.
const DefaultAuthPolicy = AllowMSCHAPv2 | AllowEAP | AllowCHAP

// policyOrder is the order, strongest first, in which we suggest methods in
// a Configure-Nak. EAP is below MS-CHAPv2 because the EAP method inside is
// the server's choice and may be EAP-MD5.
var policyOrder = [...]struct {
	bit    AuthPolicy
	method AuthMethod
	name   string
}{
	{AllowMSCHAPv2, AuthMSCHAPv2, "mschapv2"},
	{AllowEAP, AuthEAP, "eap"},
	{AllowCHAP, AuthCHAPMD5, "chap"},
	{AllowPAP, AuthPAP, "pap"},
}

// ParseAuthPolicy reads a comma-separated list of pap, chap, mschapv2 and
// eap (case and spaces ignored).
func ParseAuthPolicy(s string) (AuthPolicy, error) {
	var p AuthPolicy
	for _, f := range strings.Split(s, ",") {
		f = strings.ToLower(strings.TrimSpace(f))
		found := false
		for _, o := range policyOrder {
			if f == o.name {
				p |= o.bit
				found = true
			}
		}
		if !found {
			if f == "" {
				return 0, fmt.Errorf("empty PPP authentication method in %q (want a list of pap, chap, mschapv2, eap)", s)
			}
			return 0, fmt.Errorf("unknown PPP authentication method %q (want pap, chap, mschapv2 or eap)", f)
		}
	}
	return p, nil
}

// String lists the allowed methods, strongest first, as ParseAuthPolicy reads them.
func (p AuthPolicy) String() string {
	var names []string
	for _, o := range policyOrder {
		if p&o.bit != 0 {
			names = append(names, o.name)
		}
	}
	return strings.Join(names, ",")
}

// policyBit is the policy bit that allows m (0 for AuthNone and unknown).
func policyBit(m AuthMethod) AuthPolicy {
	switch m {
	case AuthPAP:
		return AllowPAP
	case AuthCHAPMD5:
		return AllowCHAP
	case AuthMSCHAPv2:
		return AllowMSCHAPv2
	case AuthEAP, AuthEAPMD5, AuthEAPMSCHAPv2:
		return AllowEAP
	}
	return 0
}

// Allows reports whether the policy lets us authenticate with m.
func (p AuthPolicy) Allows(m AuthMethod) bool { b := policyBit(m); return b != 0 && p&b != 0 }

// PolicyName is the --ppp-auth word that allows m ("" if none does).
func (m AuthMethod) PolicyName() string {
	for _, o := range policyOrder {
		if o.bit == policyBit(m) {
			return o.name
		}
	}
	return ""
}

// AuthRefusedError: the server requires an authentication method the policy
// does not allow (Method is then a method this package implements) or that
// this package does not implement at all (Method is AuthNone; Name says what
// it is). It matches ErrAuthRejected.
type AuthRefusedError struct {
	Method AuthMethod
	Name   string // the server's method as shown to the user, e.g. "PAP", "EAP-TLS"
}

func (e *AuthRefusedError) Error() string {
	if e.Method == AuthNone {
		return fmt.Sprintf("ppp: the server requires %s, which is not implemented", e.Name)
	}
	return fmt.Sprintf("ppp: the server requires %s, which the authentication policy does not allow", e.Name)
}

// Is makes errors.Is(err, ErrAuthRejected) true.
func (e *AuthRefusedError) Is(target error) bool { return target == ErrAuthRejected }

// AsAuthRefused returns the AuthRefusedError in err's chain, or nil.
func AsAuthRefused(err error) *AuthRefusedError {
	var e *AuthRefusedError
	if errors.As(err, &e) {
		return e
	}
	return nil
}
