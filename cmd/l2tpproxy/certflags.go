package main

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"strings"

	"golang.org/x/crypto/pkcs12"

	"github.com/l2tpproxy/l2tpproxy/tunnel/ike"
)

// certificates reads --cert, --key and --ca, or --p12 (with its password
// and, optionally, --ca): nil if none is given, a configuration error
// unless a complete set is.
func certificates(cx flagValues) (*ike.Certificates, error) {
	certF, keyF, caF, p12F := cx.String("cert"), cx.String("key"), cx.String("ca"), cx.String("p12")
	if p12F != "" {
		if certF != "" || keyF != "" {
			return nil, configError("give either --p12 or --cert and --key, not both")
		}
		return p12Certificates(cx, p12F, caF)
	}
	if certF == "" && keyF == "" && caF == "" {
		return nil, nil
	}
	if certF == "" || keyF == "" || caF == "" {
		return nil, configError("certificate authentication needs --cert, --key and --ca together (or --p12)")
	}
	certPEM, err := readFlagFile("cert", certF)
	if err != nil {
		return nil, err
	}
	keyPEM, err := readFlagFile("key", keyF)
	if err != nil {
		return nil, err
	}
	caPEM, err := readFlagFile("ca", caF)
	if err != nil {
		return nil, err
	}
	return loadCertificates(certPEM, keyPEM, caPEM)
}

func readFlagFile(flag, path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, configError("cannot read --%s: %v", flag, err)
	}
	return b, nil
}

func loadCertificates(certPEM, keyPEM, caPEM []byte) (*ike.Certificates, error) {
	c, err := ike.LoadCertificates(certPEM, keyPEM, caPEM)
	if err != nil {
		return nil, configError("%s", strings.TrimPrefix(err.Error(), ike.ErrConfig.Error()+": "))
	}
	return c, nil
}

// p12Certificates reads a PKCS#12 file (RFC 7292) holding our certificate,
// its private key and possibly CA certificates, decrypted with
// --p12-password (or --p12-password-file; empty if neither). The CA
// certificates it holds are trusted only when --ca is not given. Errors
// never contain the password.
func p12Certificates(cx flagValues, path, caF string) (*ike.Certificates, error) {
	pw, err := secret(cx, "p12-password", "p12-password-file")
	if err != nil {
		return nil, err
	}
	der, err := readFlagFile("p12", path)
	if err != nil {
		return nil, err
	}
	blocks, err := pkcs12.ToPEM(der, string(pw))
	switch {
	case errors.Is(err, pkcs12.ErrIncorrectPassword):
		return nil, configError("--p12: wrong password (--p12-password or --p12-password-file)")
	case err != nil && strings.Contains(err.Error(), "unknown"):
		// x/crypto/pkcs12 reads the 3DES/RC2 and SHA-1 encryption of most
		// exports, not the AES (PBES2) that OpenSSL 3 writes by default.
		return nil, configError("--p12: %v: re-export it with openssl pkcs12 -export -keypbe PBE-SHA1-3DES -certpbe PBE-SHA1-3DES -macalg sha1, or give --cert and --key as PEM", err)
	case err != nil:
		return nil, configError("--p12: %v", err)
	}
	// ToPEM's "PRIVATE KEY" blocks hold PKCS#1 (RSA) or SEC 1 (EC) bytes.
	var key *rsa.PrivateKey
	var certs []*x509.Certificate
	for _, b := range blocks {
		switch b.Type {
		case "PRIVATE KEY":
			if key != nil {
				return nil, configError("--p12 holds more than one private key")
			}
			if key, err = x509.ParsePKCS1PrivateKey(b.Bytes); err != nil {
				return nil, configError("--p12: the private key is not an RSA key; only RSA keys are supported")
			}
		case "CERTIFICATE":
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return nil, configError("--p12: a certificate does not parse: %v", err)
			}
			certs = append(certs, c)
		}
	}
	if key == nil {
		return nil, configError("--p12 holds no private key")
	}
	// Ours is the certificate of the key; the others are CA certificates.
	var ours *x509.Certificate
	var cas []*x509.Certificate
	for _, c := range certs {
		if pub, ok := c.PublicKey.(*rsa.PublicKey); ok && ours == nil && pub.Equal(&key.PublicKey) {
			ours = c
		} else {
			cas = append(cas, c)
		}
	}
	if ours == nil {
		return nil, configError("--p12 holds no certificate for its private key")
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ours.Raw})
	var caPEM []byte
	if caF != "" {
		if caPEM, err = readFlagFile("ca", caF); err != nil {
			return nil, err
		}
	} else {
		for _, c := range cas {
			caPEM = append(caPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
		}
		if len(caPEM) == 0 {
			return nil, configError("--p12 holds no CA certificate: give the server's CA with --ca")
		}
	}
	return loadCertificates(certPEM, keyPEM, caPEM)
}
