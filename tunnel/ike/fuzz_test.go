package ike

import (
	"context"
	"math/rand"
	"path/filepath"
	"testing"

	"github.com/l2tpproxy/l2tpproxy/tunnel/capture"
)

func addCaptureSeeds(f *testing.F) [][]byte {
	var all [][]byte
	dirs, err := capture.Sessions(capturesDir)
	if err != nil {
		f.Fatal(err)
	}
	for _, d := range dirs {
		pkts, err := readCapturedIKE(filepath.Join(d, "outer.pcap"))
		if err != nil {
			f.Fatal(err)
		}
		for _, p := range pkts {
			f.Add(p.msg)
			all = append(all, p.msg)
		}
	}
	if len(all) == 0 {
		f.Fatal("no seeds")
	}
	return all
}

// FuzzParse runs every parser over arbitrary ISAKMP messages and, for
// encrypted ones, over the ciphertext as if it were a decrypted payload chain.
func FuzzParse(f *testing.F) {
	addCaptureSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Parse(b)
		if err != nil {
			return
		}
		ps := m.Payloads
		if m.Flags&FlagEncryption != 0 {
			ps, _, _ = ParsePayloads(m.NextPayload, m.Ciphertext)
		}
		for _, p := range ps {
			if len(p.Raw) != len(p.Body)+4 {
				t.Fatal("raw/body mismatch")
			}
			switch p.Type {
			case PayloadSA:
				if sa, err := ParseSA(p.Body); err == nil {
					for _, pr := range sa.Proposals {
						for i := range pr.Transforms {
							p1FromTransform(&pr.Transforms[i])
							p2FromTransform(&pr.Transforms[i])
							lifetimeOf(pr.Transforms[i].Attrs, 1, 2)
						}
					}
				}
			case PayloadID:
				ParseID(p.Body)
			case PayloadNotify:
				if n, err := ParseNotify(p.Body); err == nil {
					ParseAttributes(n.Data)
				}
			case PayloadDelete:
				ParseDelete(p.Body)
			case PayloadNATOA, PayloadNATOADraft:
				ParseNATOA(p.Body)
			}
		}
	})
}

type sinkTransport struct{ n int }

func (s *sinkTransport) WriteIKE([]byte, bool) error { s.n++; return nil }

// FuzzInitiatorMainMode feeds arbitrary replies (with our cookie patched
// in) to an Initiator that has just sent MM1; it must never panic.
func FuzzInitiatorMainMode(f *testing.F) {
	addCaptureSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := NewInitiator(Config{PSK: []byte("k"), LocalAddr: clientAddr, RemoteAddr: serverAddr,
			Rand: rand.New(rand.NewSource(1))}, &sinkTransport{})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		s.r.ctx = ctx
		sa, err := s.r.startMainMode()
		if err != nil {
			t.Fatal(err)
		}
		msg := append([]byte(nil), b...)
		if len(msg) >= 8 {
			copy(msg, sa.ckyI[:])
		}
		_ = s.r.handle(msg)
	})
}
