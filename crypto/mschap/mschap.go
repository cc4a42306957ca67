// Package mschap implements the authenticator computations of MS-CHAPv2
// (RFC 2759) and CHAP with MD5 (RFC 1994 §4.1), as used by PPP over L2TP.
//
// Passwords are byte slices holding UTF-8 text. They are never logged and
// never appear in errors; intermediate password hashes are wiped where this
// package owns them.
package mschap

import (
	"bytes"
	"crypto/des"
	"crypto/md5"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"

	"golang.org/x/crypto/md4"
)

// Sizes of the MS-CHAPv2 values (RFC 2759 §4).
const (
	ChallengeLen     = 16 // Authenticator-Challenge and Peer-Challenge
	NTResponseLen    = 24
	ResponseValueLen = 49 // Peer-Challenge | 8 reserved | NT-Response | Flags
	AuthResponseLen  = 20 // binary form of the "S=" authenticator response
)

// Sentinel errors.
var (
	// ErrMalformed: a Success/Failure message or response value does not parse.
	ErrMalformed = errors.New("mschap: malformed message")
)

// NTPasswordHash returns MD4 over the password encoded as UTF-16LE
// (RFC 2759 §8.3). The password is UTF-8; invalid bytes are encoded as
// U+FFFD (ASCII passwords, the common case, match pppd byte for byte).
func NTPasswordHash(password []byte) [16]byte {
	buf := make([]byte, 0, 2*len(password)+4)
	for p := password; len(p) > 0; {
		r, n := utf8.DecodeRune(p)
		p = p[n:]
		if r >= 0x10000 {
			r1, r2 := utf16.EncodeRune(r)
			buf = append(buf, byte(r1), byte(r1>>8), byte(r2), byte(r2>>8))
			continue
		}
		buf = append(buf, byte(r), byte(r>>8))
	}
	h := md4.New()
	h.Write(buf)
	clear(buf)
	var out [16]byte
	h.Sum(out[:0])
	return out
}

// HashNTPasswordHash returns MD4(NTPasswordHash) (RFC 2759 §8.4).
func HashNTPasswordHash(passwordHash [16]byte) [16]byte {
	h := md4.New()
	h.Write(passwordHash[:])
	var out [16]byte
	h.Sum(out[:0])
	return out
}

// StripDomain removes a leading "DOMAIN\" from a user name. RFC 2759 §8.2
// and pppd's ChallengeHash hash only the bare user name.
func StripDomain(userName string) string {
	if i := strings.LastIndexByte(userName, '\\'); i >= 0 {
		return userName[i+1:]
	}
	return userName
}

// ChallengeHash is SHA1(PeerChallenge | AuthenticatorChallenge | UserName)[:8]
// with any DOMAIN\ prefix stripped from userName (RFC 2759 §8.2).
func ChallengeHash(peerChallenge, authChallenge [ChallengeLen]byte, userName string) [8]byte {
	h := sha1.New()
	h.Write(peerChallenge[:])
	h.Write(authChallenge[:])
	h.Write([]byte(StripDomain(userName)))
	var sum [sha1.Size]byte
	h.Sum(sum[:0])
	var out [8]byte
	copy(out[:], sum[:8])
	return out
}

// desKey expands 7 key bytes to an 8-byte DES key, one parity-free bit
// per byte (RFC 2759 §8.6 DesEncrypt; the parity bit is ignored by DES).
func desKey(k []byte) [8]byte {
	var o [8]byte
	o[0] = k[0]
	o[1] = k[0]<<7 | k[1]>>1
	o[2] = k[1]<<6 | k[2]>>2
	o[3] = k[2]<<5 | k[3]>>3
	o[4] = k[3]<<4 | k[4]>>4
	o[5] = k[4]<<3 | k[5]>>5
	o[6] = k[5]<<2 | k[6]>>6
	o[7] = k[6] << 1
	return o
}

// ChallengeResponse is the DES-based 24-byte response to an 8-byte challenge
// keyed by the 16-byte password hash zero-padded to 21 bytes (RFC 2759 §8.5).
func ChallengeResponse(challenge [8]byte, passwordHash [16]byte) [NTResponseLen]byte {
	var z [21]byte
	copy(z[:], passwordHash[:])
	var out [NTResponseLen]byte
	for i := 0; i < 3; i++ {
		k := desKey(z[7*i : 7*i+7])
		c, err := des.NewCipher(k[:])
		if err != nil { // impossible: key is 8 bytes
			continue
		}
		c.Encrypt(out[8*i:8*i+8], challenge[:])
		clear(k[:])
	}
	clear(z[:])
	return out
}

// GenerateNTResponse computes the 24-byte NT-Response (RFC 2759 §8.1).
func GenerateNTResponse(authChallenge, peerChallenge [ChallengeLen]byte, userName string, password []byte) [NTResponseLen]byte {
	ch := ChallengeHash(peerChallenge, authChallenge, userName)
	ph := NTPasswordHash(password)
	r := ChallengeResponse(ch, ph)
	clear(ph[:])
	return r
}

var (
	magic1 = []byte("Magic server to client signing constant")
	magic2 = []byte("Pad to make it do more than one iteration")
)

// GenerateAuthenticatorResponse computes the 20-byte authenticator response
// the server returns as "S=<40 hex>" in Success (RFC 2759 §8.7).
func GenerateAuthenticatorResponse(password []byte, ntResponse [NTResponseLen]byte, peerChallenge, authChallenge [ChallengeLen]byte, userName string) [AuthResponseLen]byte {
	ph := NTPasswordHash(password)
	phh := HashNTPasswordHash(ph)
	clear(ph[:])
	h := sha1.New()
	h.Write(phh[:])
	h.Write(ntResponse[:])
	h.Write(magic1)
	var digest [sha1.Size]byte
	h.Sum(digest[:0])
	clear(phh[:])
	ch := ChallengeHash(peerChallenge, authChallenge, userName)
	h.Reset()
	h.Write(digest[:])
	h.Write(ch[:])
	h.Write(magic2)
	var out [AuthResponseLen]byte
	h.Sum(out[:0])
	return out
}

// FormatAuthenticatorResponse returns "S=" followed by 40 uppercase hex digits.
func FormatAuthenticatorResponse(a [AuthResponseLen]byte) string {
	return "S=" + strings.ToUpper(hex.EncodeToString(a[:]))
}

// ParseSuccess parses the message of an MS-CHAPv2 Success packet:
// "S=<40 hex> M=<msg>" (RFC 2759 §5). Like pppd it also accepts "S=<hex>"
// alone and "S=<hex>M=<msg>". The hex digits may be of either case.
func ParseSuccess(msg []byte) (auth [AuthResponseLen]byte, text string, err error) {
	if len(msg) < 2+2*AuthResponseLen || msg[0] != 'S' || msg[1] != '=' {
		return auth, "", fmt.Errorf("%w: success message lacks S=<40 hex>", ErrMalformed)
	}
	if _, err := hex.Decode(auth[:], msg[2:2+2*AuthResponseLen]); err != nil {
		return auth, "", fmt.Errorf("%w: bad hex in S=", ErrMalformed)
	}
	rest := msg[2+2*AuthResponseLen:]
	rest = bytes.TrimLeft(rest, " ")
	if bytes.HasPrefix(rest, []byte("M=")) {
		text = string(rest[2:])
	} else if len(rest) > 0 {
		return auth, "", fmt.Errorf("%w: trailing data after S=", ErrMalformed)
	}
	return auth, text, nil
}

// CheckAuthenticatorResponse reports whether the Success message carries the
// authenticator response expected for these values, compared in constant
// time (RFC 2759 §8.8). It also returns the server's M= text.
func CheckAuthenticatorResponse(password []byte, ntResponse [NTResponseLen]byte, peerChallenge, authChallenge [ChallengeLen]byte, userName string, successMsg []byte) (ok bool, text string) {
	got, text, err := ParseSuccess(successMsg)
	if err != nil {
		return false, ""
	}
	want := GenerateAuthenticatorResponse(password, ntResponse, peerChallenge, authChallenge, userName)
	return subtle.ConstantTimeCompare(got[:], want[:]) == 1, text
}

// Failure is a parsed MS-CHAPv2 Failure message
// "E=eeeeeeeeee R=r C=cccccccccccccccccccccccccccccccc V=vvvvvvvvvv M=<msg>"
// (RFC 2759 §6). Fields that are absent keep their zero value.
type Failure struct {
	Code         int  // E=, e.g. 691 ERROR_AUTHENTICATION_FAILURE
	Retry        bool // R=1
	HasChallenge bool
	Challenge    [ChallengeLen]byte // C=
	Version      int                // V=
	Message      string             // M=
}

// ParseFailure parses a Failure message. Only E= is required.
func ParseFailure(msg []byte) (Failure, error) {
	var f Failure
	s := string(msg)
	haveE := false
	for len(s) > 0 {
		s = strings.TrimLeft(s, " ")
		if len(s) < 2 || s[1] != '=' {
			break
		}
		key := s[0]
		if key == 'M' { // the message runs to the end
			f.Message = s[2:]
			break
		}
		val := s[2:]
		if i := strings.IndexByte(val, ' '); i >= 0 {
			val, s = val[:i], val[i:]
		} else {
			s = ""
		}
		switch key {
		case 'E':
			n, err := strconv.ParseUint(val, 10, 31)
			if err != nil {
				return f, fmt.Errorf("%w: bad E= in failure", ErrMalformed)
			}
			f.Code, haveE = int(n), true
		case 'R':
			f.Retry = val == "1"
		case 'C':
			if len(val) == 2*ChallengeLen {
				if _, err := hex.Decode(f.Challenge[:], []byte(val)); err == nil {
					f.HasChallenge = true
				}
			}
		case 'V':
			if n, err := strconv.ParseUint(val, 10, 31); err == nil {
				f.Version = int(n)
			}
		}
	}
	if !haveE {
		return f, fmt.Errorf("%w: failure message lacks E=", ErrMalformed)
	}
	return f, nil
}

// FormatFailure builds a Failure message in the RFC 2759 §6 form.
func FormatFailure(code int, retry bool, challenge [ChallengeLen]byte, version int, message string) string {
	r := 0
	if retry {
		r = 1
	}
	return fmt.Sprintf("E=%d R=%d C=%s V=%d M=%s", code, r,
		strings.ToUpper(hex.EncodeToString(challenge[:])), version, message)
}

// ResponseValue is the 49-byte Value of an MS-CHAPv2 Response packet
// (RFC 2759 §4): Peer-Challenge(16) | Reserved(8, zero) | NT-Response(24) | Flags(1).
type ResponseValue [ResponseValueLen]byte

// NewResponseValue lays out a Response value with Flags 0.
func NewResponseValue(peerChallenge [ChallengeLen]byte, ntResponse [NTResponseLen]byte) ResponseValue {
	var v ResponseValue
	copy(v[:16], peerChallenge[:])
	copy(v[24:48], ntResponse[:])
	return v
}

// ParseResponseValue splits a Response value; it must be exactly 49 bytes.
func ParseResponseValue(b []byte) (peerChallenge [ChallengeLen]byte, ntResponse [NTResponseLen]byte, flags byte, err error) {
	if len(b) != ResponseValueLen {
		return peerChallenge, ntResponse, 0, fmt.Errorf("%w: response value is %d bytes, want %d", ErrMalformed, len(b), ResponseValueLen)
	}
	copy(peerChallenge[:], b[:16])
	copy(ntResponse[:], b[24:48])
	return peerChallenge, ntResponse, b[48], nil
}

// CHAPMD5Response is MD5(Identifier | secret | Challenge) (RFC 1994 §4.1).
func CHAPMD5Response(id byte, secret, challenge []byte) [md5.Size]byte {
	h := md5.New()
	h.Write([]byte{id})
	h.Write(secret)
	h.Write(challenge)
	var out [md5.Size]byte
	h.Sum(out[:0])
	return out
}
