package ike

import (
	"bytes"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/l2tpproxy/l2tpproxy/crypto/ikev1"
)

// Failure classes of certificate authentication; each is also wrapped with
// ErrAuthFailed.
var (
	// ErrCertUntrusted: the server's certificate chain does not lead to
	// one of our CAs (--ca), has expired, or was sent without a CERT.
	ErrCertUntrusted = errors.New("ike: server certificate not trusted")
	// ErrIdentityMismatch: the chain is trusted but names someone else
	// than --remote-id (or the server name), or the ID payload and the
	// certificate disagree.
	ErrIdentityMismatch = errors.New("ike: server identity mismatch")
	// ErrBadSignature: the SIG payload does not verify with the
	// certificate's key.
	ErrBadSignature = errors.New("ike: bad signature")
	// ErrCertRejected: the server did not accept our certificate (no MM6
	// after MM5, or an authentication notify).
	ErrCertRejected = errors.New("ike: the server did not accept our certificate")
)

// Certificate encodings (RFC 2408 §3.9) and ID types beyond codec.go's
// (RFC 2407 §4.6.2.1).
const (
	certX509Sig     uint8 = 4
	IDDERASN1DN     uint8 = 9
	authRSASig            = 3 // Authentication Method attribute value (RFC 2409 Appendix A)
	maxPeerCerts          = 8
	maxCertReqs           = 8
	maxCertBodySize       = 16 << 10
)

// Certificates configures RSA signature authentication (RFC 2409 §5.1):
// our chain and key, the CAs the peer's chain must lead to.
type Certificates struct {
	Chain []*x509.Certificate // ours, leaf first; the leaf's key is Key
	Key   *rsa.PrivateKey
	CAs   []*x509.Certificate // trusted roots (also named in our CERTREQs)
	// ServerName is what the initiator checks the server's certificate
	// against when no RemoteID is configured: the --server host (a DNS
	// name or an address, matched against the subject alternative names).
	ServerName string
}

// rsaAuth authenticates with RSA signatures (RFC 2409 §5.1):
// SKEYID = prf(Ni_b | Nr_b, g^xy), and the proof is SIG_I or SIG_R, an RSA
// signature over HASH_I or HASH_R. IKEv1 signs the raw prf output with
// PKCS#1 v1.5 type-1 padding and no DigestInfo (strongSwan's
// SIG_RSA_EMSA_PKCS1_NULL in pubkey_v1_authenticator.c; Libreswan alike).
type rsaAuth struct {
	chain    []*x509.Certificate
	key      *rsa.PrivateKey
	roots    *x509.CertPool
	caDNs    [][]byte
	remoteID string // what the peer must be; "" with serverName: the initiator checks that
	server   string
	now      func() time.Time
	// peer is the verified identity, for the log.
	peer string
}

func newRSAAuth(c *Certificates, remoteID string, now func() time.Time) (*rsaAuth, error) {
	if c == nil || len(c.Chain) == 0 || c.Key == nil {
		return nil, fmt.Errorf("%w: certificate authentication needs a certificate and its key", ErrConfig)
	}
	if len(c.CAs) == 0 {
		return nil, fmt.Errorf("%w: certificate authentication needs the CA that issued the server's certificate (--ca)", ErrConfig)
	}
	pub, ok := c.Chain[0].PublicKey.(*rsa.PublicKey)
	if !ok || !pub.Equal(&c.Key.PublicKey) {
		return nil, fmt.Errorf("%w: the private key does not belong to the certificate %q", ErrConfig, c.Chain[0].Subject)
	}
	a := &rsaAuth{chain: c.Chain, key: c.Key, roots: x509.NewCertPool(), remoteID: remoteID, server: c.ServerName, now: now}
	for _, ca := range c.CAs {
		a.roots.AddCert(ca)
		if len(a.caDNs) < maxCertReqs {
			a.caDNs = append(a.caDNs, ca.RawSubject)
		}
	}
	return a, nil
}

func (a *rsaAuth) SKEYID(s ikev1.Suite, ni, nr, gxy []byte) []byte {
	k := append(append([]byte(nil), ni...), nr...)
	return s.PRF(k, gxy)
}

func (a *rsaAuth) hash(p phase1Proof, initiator bool, idB []byte) []byte {
	if initiator {
		return p.suite.HashI(p.skeyid, p.gxi, p.gxr, p.ckyI, p.ckyR, p.saiB, idB)
	}
	return p.suite.HashR(p.skeyid, p.gxi, p.gxr, p.ckyI, p.ckyR, p.saiB, idB)
}

func (a *rsaAuth) Proof(p phase1Proof, initiator bool, idB []byte) (uint8, []byte) {
	// crypto.Hash(0): sign the bytes as they are, without DigestInfo.
	sig, err := rsa.SignPKCS1v15(nil, a.key, 0, a.hash(p, initiator, idB))
	if err != nil {
		// Only a key smaller than the hash could fail; the peer then sees
		// a signature that does not verify.
		return PayloadSig, nil
	}
	return PayloadSig, sig
}

func (a *rsaAuth) Verify(p phase1Proof, peerInitiator bool, idB []byte, payloads []Payload) error {
	leaf, err := a.verifyChain(payloads, peerInitiator)
	if err != nil {
		return err
	}
	id, err := ParseID(idB)
	if err != nil {
		return fmt.Errorf("%w: %w: %v", ErrAuthFailed, ErrIdentityMismatch, err)
	}
	if err := idMatchesCert(id, leaf); err != nil {
		return fmt.Errorf("%w: %w: %v", ErrAuthFailed, ErrIdentityMismatch, err)
	}
	if !peerInitiator {
		if err := a.checkServerIdentity(leaf); err != nil {
			return fmt.Errorf("%w: %w: %v", ErrAuthFailed, ErrIdentityMismatch, err)
		}
	}
	sig := First(payloads, PayloadSig)
	if sig == nil {
		return fmt.Errorf("%w: %w: no SIG payload", ErrAuthFailed, ErrBadSignature)
	}
	pub, ok := leaf.PublicKey.(*rsa.PublicKey)
	if !ok {
		return fmt.Errorf("%w: %w: the certificate's key is not RSA", ErrAuthFailed, ErrBadSignature)
	}
	if err := rsa.VerifyPKCS1v15(pub, 0, a.hash(p, peerInitiator, idB), sig.Body); err != nil {
		name := "SIG_R"
		if peerInitiator {
			name = "SIG_I"
		}
		return fmt.Errorf("%w: %w: %s does not verify with the key of %q", ErrAuthFailed, ErrBadSignature, name, leaf.Subject)
	}
	a.peer = leaf.Subject.String()
	return nil
}

// verifyChain parses the peer's CERT payloads (X.509 signature encoding;
// the first is the end entity, RFC 4945 §3.3: others are intermediates) and
// verifies the chain against our CAs at the runner's clock.
func (a *rsaAuth) verifyChain(payloads []Payload, peerInitiator bool) (*x509.Certificate, error) {
	var certs []*x509.Certificate
	for _, p := range All(payloads, PayloadCert) {
		if len(certs) >= maxPeerCerts {
			break
		}
		if len(p.Body) < 2 || p.Body[0] != certX509Sig || len(p.Body) > maxCertBodySize {
			continue
		}
		c, err := x509.ParseCertificate(p.Body[1:])
		if err != nil {
			return nil, fmt.Errorf("%w: %w: a CERT payload does not parse: %v", ErrAuthFailed, ErrCertUntrusted, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%w: %w: the peer sent no X.509 certificate (CERT payload)", ErrAuthFailed, ErrCertUntrusted)
	}
	leaf := certs[0]
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	opts := x509.VerifyOptions{Roots: a.roots, Intermediates: inter, CurrentTime: a.now(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}
	if _, err := leaf.Verify(opts); err != nil {
		return nil, fmt.Errorf("%w: %w: %q issued by %q: %v", ErrAuthFailed, ErrCertUntrusted, leaf.Subject, leaf.Issuer, err)
	}
	// RFC 4945 §5.1.3.2: an IKE end-entity key signs (strongSwan refuses
	// one without digitalSignature or nonRepudiation).
	if leaf.KeyUsage != 0 && leaf.KeyUsage&(x509.KeyUsageDigitalSignature|x509.KeyUsageContentCommitment) == 0 {
		return nil, fmt.Errorf("%w: %w: %q has no digitalSignature key usage", ErrAuthFailed, ErrCertUntrusted, leaf.Subject)
	}
	return leaf, nil
}

// idMatchesCert checks that the peer's ID payload names what its
// certificate says (RFC 4945 §3.1): a DN equal to the subject, or an
// address, FQDN or e-mail among the subject alternative names.
func idMatchesCert(id ID, c *x509.Certificate) error {
	switch id.Type {
	case IDDERASN1DN:
		if bytes.Equal(id.Data, c.RawSubject) {
			return nil
		}
		return fmt.Errorf("ID_DER_ASN1_DN is not the certificate's subject %q", c.Subject)
	case IDIPv4Addr, IDIPv6Addr:
		a, ok := netip.AddrFromSlice(id.Data)
		if ok {
			for _, ip := range c.IPAddresses {
				if b, ok := netip.AddrFromSlice(ip); ok && b.Unmap() == a.Unmap() {
					return nil
				}
			}
		}
		return fmt.Errorf("ID address %v is not among the certificate's addresses %v", a, c.IPAddresses)
	case IDFQDN:
		for _, n := range c.DNSNames {
			if strings.EqualFold(n, string(id.Data)) {
				return nil
			}
		}
		return fmt.Errorf("ID_FQDN %q is not among the certificate's DNS names %v", id.Data, c.DNSNames)
	case IDUserFQDN:
		for _, n := range c.EmailAddresses {
			if strings.EqualFold(n, string(id.Data)) {
				return nil
			}
		}
		return fmt.Errorf("ID_USER_FQDN %q is not among the certificate's e-mail addresses", id.Data)
	}
	return fmt.Errorf("ID type %d cannot be checked against a certificate", id.Type)
}

// checkServerIdentity checks the server's certificate against RemoteID, or
// else the server name: a DN (strongSwan syntax, "C=CH, O=Org, CN=vpn")
// equal to the subject, an address or name among the subject alternative
// names, user@fqdn among its e-mail addresses.
func (a *rsaAuth) checkServerIdentity(c *x509.Certificate) error {
	want, flag := a.remoteID, "--remote-id"
	if want == "" {
		want, flag = a.server, "the server name"
	}
	if want == "" {
		return nil
	}
	switch {
	case strings.Contains(want, "="):
		ok, err := dnEqual(want, c)
		if err != nil {
			return fmt.Errorf("%s %q: %v", flag, want, err)
		}
		if !ok {
			return fmt.Errorf("the certificate's subject is %q, not %s %q", c.Subject, flag, want)
		}
		return nil
	case strings.Contains(want, "@"):
		for _, e := range c.EmailAddresses {
			if strings.EqualFold(e, want) {
				return nil
			}
		}
		return fmt.Errorf("%s %q is not among the certificate's e-mail addresses (subject %q)", flag, want, c.Subject)
	}
	if err := c.VerifyHostname(want); err != nil {
		return fmt.Errorf("the certificate (subject %q, DNS %v, IP %v) is not valid for %s %q", c.Subject, c.DNSNames, c.IPAddresses, flag, want)
	}
	return nil
}

// localID is our phase-1 ID: the DN of our certificate (ID_DER_ASN1_DN).
func (a *rsaAuth) localID() []byte {
	return ID{Type: IDDERASN1DN, Data: a.chain[0].RawSubject}.encode()
}

// certPayloads are our CERT bodies, leaf first (X.509 signature encoding).
func (a *rsaAuth) certPayloads() [][]byte {
	out := make([][]byte, len(a.chain))
	for i, c := range a.chain {
		out[i] = append([]byte{certX509Sig}, c.Raw...)
	}
	return out
}

// certReqs are our CERTREQ bodies: X.509 signature encoding and the DN of
// each CA we trust (RFC 4945 §3.2.4).
func (a *rsaAuth) certReqs() [][]byte {
	out := make([][]byte, len(a.caDNs))
	for i, dn := range a.caDNs {
		out[i] = append([]byte{certX509Sig}, dn...)
	}
	return out
}

// ---- the hooks Main Mode calls ----

// certAuthOf returns the certificate authenticator of r, or nil for PSK.
func certAuthOf(r *runner) *rsaAuth {
	a, _ := r.auth.(*rsaAuth)
	return a
}

// authMethod is the Authentication Method attribute r offers and accepts.
func authMethod(r *runner) uint64 {
	if certAuthOf(r) != nil {
		return authRSASig
	}
	return authPSK
}

// localIDFor is our phase-1 ID body: the certificate's DN, else our address.
func localIDFor(r *runner) []byte {
	if a := certAuthOf(r); a != nil {
		return a.localID()
	}
	return r.ownIDPayload()
}

// addCertReqs adds our CERTREQ payloads (MM3, MM4) with certificates.
func addCertReqs(r *runner, b *builder) {
	if a := certAuthOf(r); a != nil {
		for _, cr := range a.certReqs() {
			b.add(PayloadCertReq, cr)
		}
	}
}

// addCerts adds our CERT payloads (MM5, MM6) with certificates.
func addCerts(r *runner, b *builder) {
	if a := certAuthOf(r); a != nil {
		for _, c := range a.certPayloads() {
			b.add(PayloadCert, c)
		}
	}
}

// authMismatchHint is what a silent or failing MM5/MM6 most likely means.
func authMismatchHint(r *runner) string {
	if certAuthOf(r) != nil {
		return "the server refused our certificate or its identity"
	}
	return "PSK mismatch likely"
}

// mm5GiveUp is the error after MM5 went unanswered.
func mm5GiveUp(r *runner) error {
	if certAuthOf(r) != nil {
		return fmt.Errorf("%w: %w: no MM6 after %d tries of MM5 (check that --cert is issued by a CA the server trusts and that the server accepts certificate authentication)", ErrAuthFailed, ErrCertRejected, mm5Tries)
	}
	return fmt.Errorf("%w: no MM6 after %d tries of MM5: phase-1 authentication failed: PSK mismatch likely", ErrAuthFailed, mm5Tries)
}

// initiatorAuth chooses the client's authenticator: certificates if
// configured, else the PSK.
func initiatorAuth(cfg Config) (Authenticator, error) {
	if cfg.Cert != nil {
		return newRSAAuth(cfg.Cert, cfg.CertRemoteID, time.Now)
	}
	return newPSKAuth(cfg.PSK)
}

// responderAuth is initiatorAuth for the test server's side: it checks
// the client's chain, not its name.
func responderAuth(cfg ResponderConfig) (Authenticator, error) {
	if cfg.Cert != nil {
		c := *cfg.Cert
		c.ServerName = ""
		return newRSAAuth(&c, "", time.Now)
	}
	return newPSKAuth(cfg.PSK)
}

// mm5Refused is the error for a server that answered MM5 with a failure
// (a notify, or something that does not decrypt).
func mm5Refused(r *runner, what string) error {
	if certAuthOf(r) != nil {
		return fmt.Errorf("%w: %w: %s (check that --cert is issued by a CA the server trusts)", ErrAuthFailed, ErrCertRejected, what)
	}
	return fmt.Errorf("%w: %s (PSK mismatch likely)", ErrAuthFailed, what)
}

// authMethodNote is added to a phase-1 NO-PROPOSAL-CHOSEN: with
// certificates every transform says RSA signatures, which a PSK-only server
// refuses whatever the algorithms.
func authMethodNote(r *runner) string {
	if certAuthOf(r) != nil {
		return ", all with RSA-signature authentication (a server that accepts only a PSK refuses them: try --psk)"
	}
	return ""
}
