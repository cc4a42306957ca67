package main

import (
	"os"
	"strings"

	"github.com/l2tpproxy/l2tpproxy/tunnel/ike"
)

// certificates reads --cert, --key and --ca: nil if none is given, a
// configuration error unless all three are.
func certificates(cx flagValues) (*ike.Certificates, error) {
	certF, keyF, caF := cx.String("cert"), cx.String("key"), cx.String("ca")
	if certF == "" && keyF == "" && caF == "" {
		return nil, nil
	}
	if certF == "" || keyF == "" || caF == "" {
		return nil, configError("certificate authentication needs --cert, --key and --ca together")
	}
	read := func(flag, path string) ([]byte, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, configError("cannot read --%s: %v", flag, err)
		}
		return b, nil
	}
	certPEM, err := read("cert", certF)
	if err != nil {
		return nil, err
	}
	keyPEM, err := read("key", keyF)
	if err != nil {
		return nil, err
	}
	caPEM, err := read("ca", caF)
	if err != nil {
		return nil, err
	}
	c, err := ike.LoadCertificates(certPEM, keyPEM, caPEM)
	if err != nil {
		return nil, configError("%s", strings.TrimPrefix(err.Error(), ike.ErrConfig.Error()+": "))
	}
	return c, nil
}
