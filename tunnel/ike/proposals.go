package ike

import (
	"errors"
	"fmt"
	"strings"

	"github.com/l2tpproxy/l2tpproxy/crypto/dh"
	"github.com/l2tpproxy/l2tpproxy/crypto/ikev1"
	"github.com/l2tpproxy/l2tpproxy/tunnel/esp"
)

// ErrBadProposal is matched (errors.Is) by every ParsePhase1 and
// ParsePhase2 error, and so is ErrConfig. The error text itself is only the
// reason, naming the bad token, so that a caller can print it in one line
// after the flag's name.
var ErrBadProposal = errors.New("ike: bad proposal")

type proposalError struct{ msg string }

func (e *proposalError) Error() string   { return e.msg }
func (e *proposalError) Unwrap() []error { return []error{ErrBadProposal, ErrConfig} }

func badProposal(format string, a ...any) error {
	return &proposalError{msg: fmt.Sprintf(format, a...)}
}

// Proposal strings use strongSwan's syntax (ipsec.conf ike=/esp=,
// swanctl proposals): comma-separated proposals, each a dash-separated list
// of algorithm tokens. A proposal may name several algorithms of a kind; it
// then stands for every combination, in the order written (encryption
// outermost, then integrity, then DH group):
//
//	--ike aes256-sha256-modp2048,3des-sha1-modp1024
//	--ike aes128-aes256-sha1-sha256-ecp256-modp2048   (8 transforms)
//	--esp aes128gcm16,aes256-sha1
//
// IKEv1 has no AEAD in phase 1 and negotiates the PRF as HMAC with the hash
// (RFC 2409 §4), so a phase-1 proposal is encryption, hash and DH group.
// ESP proposals name no DH group: PFS (--pfs) uses the phase-1 group.
// A trailing "!" (strongSwan's strict marker) is accepted and ignored.

// maxTransforms bounds what a proposal string may expand to (NewInitiator's limit).
const maxTransforms = 64

type tokenKind int

const (
	tokEnc tokenKind = iota
	tokAEAD
	tokInteg
	tokGroup
	tokNoESN
)

type token struct {
	name    string // as written, for errors
	kind    tokenKind
	enc     uint16           // phase-1 encryption (tokEnc)
	espEnc  esp.EncTransform // ESP transform (tokEnc, tokAEAD)
	keyBits int
	hash    uint16      // phase-1 hash (tokInteg)
	auth    esp.AuthAlg // ESP integrity (tokInteg)
	group   uint16      // tokGroup
}

// lookupToken classifies one algorithm token (lower case).
func lookupToken(s string) (token, bool) {
	switch s {
	case "3des":
		return token{kind: tokEnc, enc: Enc3DES, espEnc: esp.Enc3DES, keyBits: 192}, true
	case "aes", "aes128":
		return token{kind: tokEnc, enc: EncAESCBC, espEnc: esp.EncAESCBC, keyBits: 128}, true
	case "aes192":
		return token{kind: tokEnc, enc: EncAESCBC, espEnc: esp.EncAESCBC, keyBits: 192}, true
	case "aes256":
		return token{kind: tokEnc, enc: EncAESCBC, espEnc: esp.EncAESCBC, keyBits: 256}, true
	case "md5":
		return token{kind: tokInteg, hash: uint16(ikev1.HashMD5), auth: esp.AuthHMACMD5}, true
	case "sha", "sha1":
		return token{kind: tokInteg, hash: uint16(ikev1.HashSHA1), auth: esp.AuthHMACSHA1}, true
	case "sha256", "sha2_256":
		return token{kind: tokInteg, hash: uint16(ikev1.HashSHA256), auth: esp.AuthHMACSHA256}, true
	case "sha384", "sha2_384":
		return token{kind: tokInteg, hash: uint16(ikev1.HashSHA384), auth: esp.AuthHMACSHA384}, true
	case "sha512", "sha2_512":
		return token{kind: tokInteg, hash: uint16(ikev1.HashSHA512), auth: esp.AuthHMACSHA512}, true
	case "modp1024":
		return token{kind: tokGroup, group: 2}, true
	case "modp1536":
		return token{kind: tokGroup, group: 5}, true
	case "modp2048":
		return token{kind: tokGroup, group: 14}, true
	case "modp3072":
		return token{kind: tokGroup, group: 15}, true
	case "modp4096":
		return token{kind: tokGroup, group: 16}, true
	case "ecp256":
		return token{kind: tokGroup, group: 19}, true
	case "ecp384":
		return token{kind: tokGroup, group: 20}, true
	case "ecp521":
		return token{kind: tokGroup, group: 21}, true
	case "noesn":
		return token{kind: tokNoESN}, true
	}
	// AES-GCM: aes<bits>gcm<icv>, ICV in bytes (8, 12, 16) or bits (64, 96, 128)
	// as strongSwan accepts both (RFC 4106 transform IDs 18, 19, 20).
	if rest, ok := strings.CutPrefix(s, "aes"); ok {
		bits, icv, ok := strings.Cut(rest, "gcm")
		if !ok {
			return token{}, false
		}
		var kb int
		switch bits {
		case "128", "":
			kb = 128
		case "192":
			kb = 192
		case "256":
			kb = 256
		default:
			return token{}, false
		}
		var e esp.EncTransform
		switch icv {
		case "8", "64":
			e = esp.EncAESGCM8
		case "12", "96":
			e = esp.EncAESGCM12
		case "16", "128":
			e = esp.EncAESGCM16
		default:
			return token{}, false
		}
		return token{kind: tokAEAD, espEnc: e, keyBits: kb}, true
	}
	return token{}, false
}

// splitProposals yields each proposal's tokens, lower-cased, with a
// trailing "!" removed; an empty list or an empty proposal is an error.
func splitProposals(list string) ([][]string, error) {
	list = strings.TrimSuffix(strings.TrimSpace(list), "!")
	if list == "" {
		return nil, badProposal("empty proposal list")
	}
	var out [][]string
	for _, p := range strings.Split(list, ",") {
		p = strings.ToLower(strings.TrimSpace(p))
		if p == "" {
			return nil, badProposal("empty proposal in %q", list)
		}
		toks := strings.Split(p, "-")
		for _, t := range toks {
			if t == "" {
				return nil, badProposal("empty algorithm in %q", p)
			}
		}
		out = append(out, toks)
	}
	return out, nil
}

// classify looks up each token of one proposal (prop, for errors) and groups
// the tokens by kind, each group in the order written.
func classify(toks []string, prop string) (map[tokenKind][]token, error) {
	byKind := make(map[tokenKind][]token, 4)
	for _, s := range toks {
		t, ok := lookupToken(s)
		if !ok {
			return nil, badProposal("unknown algorithm %q in %q", s, prop)
		}
		t.name = s
		byKind[t.kind] = append(byKind[t.kind], t)
	}
	return byKind, nil
}

// ParsePhase1 reads a phase-1 (IKE) proposal list in strongSwan's syntax,
// e.g. "aes256-sha256-modp2048,3des-sha1-modp1024", into the transforms to
// offer, in order, without duplicates. Errors name the offending token.
func ParsePhase1(list string) ([]Phase1Transform, error) {
	props, err := splitProposals(list)
	if err != nil {
		return nil, err
	}
	var out []Phase1Transform
	for _, toks := range props {
		prop := strings.Join(toks, "-")
		byKind, err := classify(toks, prop)
		if err != nil {
			return nil, err
		}
		if t := byKind[tokAEAD]; len(t) > 0 {
			return nil, badProposal("%q in %q: IKEv1 phase 1 has no AEAD ciphers (use it in --esp)", t[0].name, prop)
		}
		if t := byKind[tokNoESN]; len(t) > 0 {
			return nil, badProposal("%q in %q is an ESP option", t[0].name, prop)
		}
		encs, hashes, groups := byKind[tokEnc], byKind[tokInteg], byKind[tokGroup]
		switch {
		case len(encs) == 0:
			return nil, badProposal("no encryption algorithm in %q", prop)
		case len(hashes) == 0:
			return nil, badProposal("no hash (integrity) algorithm in %q", prop)
		case len(groups) == 0:
			return nil, badProposal("no DH group in %q", prop)
		}
		for _, e := range encs {
			for _, h := range hashes {
				for _, g := range groups {
					t := Phase1Transform{Enc: e.enc, KeyBits: e.keyBits, Hash: h.hash, Group: g.group}.normalized()
					if !containsP1(out, t) {
						out = append(out, t)
					}
				}
			}
		}
		if len(out) > maxTransforms {
			return nil, badProposal("more than %d transforms", maxTransforms)
		}
	}
	return out, nil
}

// ParsePhase2 reads an ESP proposal list in strongSwan's syntax, e.g.
// "aes128gcm16,aes256-sha1", into the algorithms to offer, in order,
// without duplicates. DH groups are refused: PFS uses the phase-1 group.
func ParsePhase2(list string) ([]esp.Algorithm, error) {
	props, err := splitProposals(list)
	if err != nil {
		return nil, err
	}
	var out []esp.Algorithm
	for _, toks := range props {
		prop := strings.Join(toks, "-")
		byKind, err := classify(toks, prop)
		if err != nil {
			return nil, err
		}
		if t := byKind[tokGroup]; len(t) > 0 {
			return nil, badProposal("DH group %q in ESP proposal %q: PFS uses the phase-1 group (--pfs yes)", t[0].name, prop)
		}
		encs, aeads, integs := byKind[tokEnc], byKind[tokAEAD], byKind[tokInteg]
		switch {
		case len(encs) == 0 && len(aeads) == 0:
			return nil, badProposal("no encryption algorithm in %q", prop)
		case len(encs) > 0 && len(aeads) > 0:
			return nil, badProposal("AEAD and non-AEAD ciphers mixed in %q (write them as two proposals)", prop)
		case len(aeads) > 0 && len(integs) > 0:
			return nil, badProposal("%q: AES-GCM takes no integrity algorithm (RFC 4106)", prop)
		case len(encs) > 0 && len(integs) == 0:
			return nil, badProposal("no integrity algorithm in %q", prop)
		}
		add := func(a esp.Algorithm) {
			if !containsP2(out, a) {
				out = append(out, a)
			}
		}
		for _, a := range aeads {
			add(esp.Algorithm{Enc: a.espEnc, EncKeyBits: a.keyBits})
		}
		for _, e := range encs {
			for _, i := range integs {
				add(esp.Algorithm{Enc: e.espEnc, EncKeyBits: e.keyBits, Auth: i.auth})
			}
		}
		if len(out) > maxTransforms {
			return nil, badProposal("more than %d transforms", maxTransforms)
		}
	}
	return out, nil
}

// FormatPhase1 writes transforms in the syntax ParsePhase1 reads.
func FormatPhase1(ts []Phase1Transform) string {
	s := make([]string, len(ts))
	for i, t := range ts {
		s[i] = encToken(t.Enc, t.KeyBits) + "-" + hashToken(t.Hash) + "-" + groupToken(t.Group)
	}
	return strings.Join(s, ",")
}

// FormatPhase2 writes ESP algorithms in the syntax ParsePhase2 reads.
func FormatPhase2(as []esp.Algorithm) string {
	s := make([]string, len(as))
	for i, a := range as {
		switch a.Enc {
		case esp.EncAESGCM8, esp.EncAESGCM12, esp.EncAESGCM16:
			icv := map[esp.EncTransform]int{esp.EncAESGCM8: 8, esp.EncAESGCM12: 12, esp.EncAESGCM16: 16}[a.Enc]
			s[i] = fmt.Sprintf("aes%dgcm%d", a.EncKeyBits, icv)
		case esp.Enc3DES:
			s[i] = "3des-" + authToken(a.Auth)
		default:
			s[i] = fmt.Sprintf("aes%d-%s", a.EncKeyBits, authToken(a.Auth))
		}
	}
	return strings.Join(s, ",")
}

func encToken(enc uint16, bits int) string {
	if enc == Enc3DES {
		return "3des"
	}
	if enc == EncAESCBC {
		return fmt.Sprintf("aes%d", bits)
	}
	return fmt.Sprintf("enc%d", enc)
}

func hashToken(h uint16) string {
	switch ikev1.HashAlg(h) {
	case ikev1.HashMD5:
		return "md5"
	case ikev1.HashSHA1:
		return "sha1"
	case ikev1.HashSHA256:
		return "sha256"
	case ikev1.HashSHA384:
		return "sha384"
	case ikev1.HashSHA512:
		return "sha512"
	}
	return fmt.Sprintf("hash%d", h)
}

func authToken(a esp.AuthAlg) string {
	switch a {
	case esp.AuthHMACMD5:
		return "md5"
	case esp.AuthHMACSHA1:
		return "sha1"
	case esp.AuthHMACSHA256:
		return "sha256"
	case esp.AuthHMACSHA384:
		return "sha384"
	case esp.AuthHMACSHA512:
		return "sha512"
	}
	return fmt.Sprintf("auth%d", a)
}

func groupToken(g uint16) string {
	grp, err := dh.ByID(g)
	if err != nil {
		return fmt.Sprintf("group%d", g)
	}
	return strings.ToLower(grp.String())
}
