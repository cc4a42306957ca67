// Package certtest makes throw-away X.509 PKIs for tests of certificate
// authentication (tunnel/ike, the test server, the CLI): a CA and RSA
// end-entity certificates it issues, generated with crypto/x509 at test
// time so that no key is committed.
package certtest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"sync"
	"time"
)

// Validity of every certificate made here: wide enough for the clock of a
// testing/synctest bubble (it starts at 2000-01-01 00:00 UTC), for fake
// clocks that start in 2023 and for real time.
var (
	NotBefore = time.Date(1999, 1, 1, 0, 0, 0, 0, time.UTC)
	NotAfter  = time.Date(2045, 1, 1, 0, 0, 0, 0, time.UTC)
)

// Identity is a certificate and its key.
type Identity struct {
	Cert *x509.Certificate
	Key  *rsa.PrivateKey
}

// CertPEM and KeyPEM encode it as --cert and --key files hold it.
func (id Identity) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: id.Cert.Raw})
}

func (id Identity) KeyPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(id.Key)})
}

var (
	keyMu   sync.Mutex
	keyPool = map[int][]*rsa.PrivateKey{}
)

// key returns the n-th RSA key of that size, generated once per process
// (key generation dominates these tests' time).
func key(bits, n int) *rsa.PrivateKey {
	keyMu.Lock()
	defer keyMu.Unlock()
	for len(keyPool[bits]) <= n {
		k, err := rsa.GenerateKey(rand.Reader, bits)
		if err != nil {
			panic(err) // only in tests: the system's random source failed
		}
		keyPool[bits] = append(keyPool[bits], k)
	}
	return keyPool[bits][n]
}

var serial int64

// NewCA makes a self-signed CA named cn; keyIndex picks a distinct key.
func NewCA(cn string, keyIndex int) Identity {
	k := key(2048, keyIndex)
	serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{Country: []string{"CH"}, Organization: []string{"l2tpproxy test"}, CommonName: cn},
		NotBefore: NotBefore, NotAfter: NotAfter, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		panic(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		panic(err)
	}
	return Identity{Cert: c, Key: k}
}

// Issue makes an end-entity certificate signed by ca with common name cn,
// the DNS names and IP addresses given as subject alternative names, a key
// of bits bits (2048 if 0) and digitalSignature key usage (RFC 4945
// §5.1.3.2).
func (ca Identity) Issue(cn string, keyIndex, bits int, dns []string, ips ...net.IP) Identity {
	if bits == 0 {
		bits = 2048
	}
	k := key(bits, keyIndex)
	serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{Country: []string{"CH"}, Organization: []string{"l2tpproxy test"}, CommonName: cn},
		NotBefore: NotBefore, NotAfter: NotAfter, DNSNames: dns, IPAddresses: ips,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &k.PublicKey, ca.Key)
	if err != nil {
		panic(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		panic(err)
	}
	return Identity{Cert: c, Key: k}
}
