package ike

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
)

// LoadCertificates reads our certificate (PEM: the end entity first, then
// any intermediates), its RSA private key (PEM, PKCS#1 or PKCS#8) and the
// CA bundle (PEM) the server's chain must lead to. The key is a secret:
// errors never quote it.
func LoadCertificates(certPEM, keyPEM, caPEM []byte) (*Certificates, error) {
	chain, err := parseCertsPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("%w: --cert: %v", ErrConfig, err)
	}
	cas, err := parseCertsPEM(caPEM)
	if err != nil {
		return nil, fmt.Errorf("%w: --ca: %v", ErrConfig, err)
	}
	key, err := parseKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%w: --key: %v", ErrConfig, err)
	}
	c := &Certificates{Chain: chain, Key: key, CAs: cas}
	if pub, ok := chain[0].PublicKey.(*rsa.PublicKey); !ok || !pub.Equal(&key.PublicKey) {
		return nil, fmt.Errorf("%w: --key is not the private key of --cert (%q)", ErrConfig, chain[0].Subject)
	}
	return c, nil
}

func parseCertsPEM(b []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no PEM CERTIFICATE found")
	}
	return out, nil
}

func parseKeyPEM(b []byte) (*rsa.PrivateKey, error) {
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return nil, fmt.Errorf("no PEM private key found (RSA PRIVATE KEY or PRIVATE KEY)")
		}
		switch blk.Type {
		case "RSA PRIVATE KEY":
			k, err := x509.ParsePKCS1PrivateKey(blk.Bytes)
			if err != nil {
				return nil, fmt.Errorf("PKCS#1 key does not parse")
			}
			return k, nil
		case "PRIVATE KEY":
			k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
			if err != nil {
				return nil, fmt.Errorf("PKCS#8 key does not parse")
			}
			rk, ok := k.(*rsa.PrivateKey)
			if !ok {
				return nil, fmt.Errorf("the key is %T; only RSA keys are supported", k)
			}
			return rk, nil
		case "ENCRYPTED PRIVATE KEY":
			return nil, fmt.Errorf("the key is encrypted; decrypt it first (openssl pkey -in KEY -out PLAIN)")
		}
	}
}
