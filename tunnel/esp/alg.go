// Package esp implements ESP (RFC 4303) in transport mode, carried in UDP
// (RFC 3948), for the client side of an L2TP/IPsec connection.
//
// The types in this file are the contract between IKE (which negotiates an
// algorithm and derives key material) and the packet path (which uses it).
package esp

import "fmt"

// EncTransform is an IPsec ESP transform identifier (RFC 2407 §4.4.4, IANA
// "IPsec ESP Transform Identifiers").
type EncTransform uint8

const (
	Enc3DES     EncTransform = 3
	EncAESCBC   EncTransform = 12
	EncAESGCM8  EncTransform = 18 // AES-GCM with an 8-octet ICV (RFC 4106)
	EncAESGCM12 EncTransform = 19 // AES-GCM with a 12-octet ICV (RFC 4106)
	EncAESGCM16 EncTransform = 20 // AES-GCM with a 16-octet ICV (RFC 4106)
)

// AuthAlg is an IKEv1 phase-2 "Authentication Algorithm" attribute value
// (RFC 2407 §4.5, attribute class 5).
type AuthAlg uint16

const (
	AuthNone       AuthAlg = 0 // AEAD transforms carry no auth attribute
	AuthHMACMD5    AuthAlg = 1 // HMAC-MD5-96 (RFC 2403)
	AuthHMACSHA1   AuthAlg = 2 // HMAC-SHA1-96 (RFC 2404)
	AuthHMACSHA256 AuthAlg = 5 // HMAC-SHA2-256-128 (RFC 4868)
	AuthHMACSHA384 AuthAlg = 6 // HMAC-SHA2-384-192 (RFC 4868)
	AuthHMACSHA512 AuthAlg = 7 // HMAC-SHA2-512-256 (RFC 4868)
)

// Algorithm is one negotiated ESP suite.
type Algorithm struct {
	Enc        EncTransform
	EncKeyBits int // 128/192/256 for AES; 192 for 3DES
	Auth       AuthAlg
}

// IsAEAD reports whether the suite is an AEAD (AES-GCM) suite.
func (a Algorithm) IsAEAD() bool {
	return a.Enc == EncAESGCM8 || a.Enc == EncAESGCM12 || a.Enc == EncAESGCM16
}

// KeymatLen returns how many bytes of IKE KEYMAT this suite consumes, split
// into the encryption part (first) and the integrity part (second). For
// AES-GCM the encryption part includes the 4-byte salt (RFC 4106 §8.1).
func (a Algorithm) KeymatLen() (encLen, authLen int, err error) {
	switch a.Enc {
	case Enc3DES:
		encLen = 24
	case EncAESCBC:
		if a.EncKeyBits != 128 && a.EncKeyBits != 192 && a.EncKeyBits != 256 {
			return 0, 0, fmt.Errorf("esp: AES-CBC key length %d", a.EncKeyBits)
		}
		encLen = a.EncKeyBits / 8
	case EncAESGCM8, EncAESGCM12, EncAESGCM16:
		if a.EncKeyBits != 128 && a.EncKeyBits != 192 && a.EncKeyBits != 256 {
			return 0, 0, fmt.Errorf("esp: AES-GCM key length %d", a.EncKeyBits)
		}
		if a.Auth != AuthNone {
			return 0, 0, fmt.Errorf("esp: AES-GCM with an integrity algorithm")
		}
		return a.EncKeyBits/8 + 4, 0, nil
	default:
		return 0, 0, fmt.Errorf("esp: unsupported transform %d", a.Enc)
	}
	switch a.Auth {
	case AuthHMACMD5:
		authLen = 16
	case AuthHMACSHA1:
		authLen = 20
	case AuthHMACSHA256:
		authLen = 32
	case AuthHMACSHA384:
		authLen = 48
	case AuthHMACSHA512:
		authLen = 64
	default:
		return 0, 0, fmt.Errorf("esp: unsupported integrity algorithm %d", a.Auth)
	}
	return encLen, authLen, nil
}

// String names the suite the way logs and errors print it, e.g.
// "AES-CBC-128/HMAC-SHA1-96".
func (a Algorithm) String() string {
	var enc string
	switch a.Enc {
	case Enc3DES:
		enc = "3DES-CBC"
	case EncAESCBC:
		enc = fmt.Sprintf("AES-CBC-%d", a.EncKeyBits)
	case EncAESGCM8:
		enc = fmt.Sprintf("AES-GCM-%d/ICV8", a.EncKeyBits)
	case EncAESGCM12:
		enc = fmt.Sprintf("AES-GCM-%d/ICV12", a.EncKeyBits)
	case EncAESGCM16:
		enc = fmt.Sprintf("AES-GCM-%d", a.EncKeyBits)
	default:
		enc = fmt.Sprintf("enc#%d", a.Enc)
	}
	switch a.Auth {
	case AuthNone:
		return enc
	case AuthHMACMD5:
		return enc + "/HMAC-MD5-96"
	case AuthHMACSHA1:
		return enc + "/HMAC-SHA1-96"
	case AuthHMACSHA256:
		return enc + "/HMAC-SHA2-256-128"
	case AuthHMACSHA384:
		return enc + "/HMAC-SHA2-384-192"
	case AuthHMACSHA512:
		return enc + "/HMAC-SHA2-512-256"
	}
	return fmt.Sprintf("%s/auth#%d", enc, a.Auth)
}

// Keys is the material for one direction of an ESP SA: the SPI the receiver
// expects, the suite, and the keys split from KEYMAT (encryption first,
// integrity second; RFC 2409 §5.5, strongSwan keymat_v1.c).
type Keys struct {
	SPI     uint32
	Alg     Algorithm
	EncKey  []byte // includes the 4-byte salt for AES-GCM
	AuthKey []byte
}
