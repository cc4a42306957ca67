package ike

import (
	"bytes"
	"crypto/hmac"
	"encoding/binary"
	"net/netip"
	"path/filepath"
	"testing"

	"github.com/l2tpproxy/l2tpproxy/crypto/ikev1"
	"github.com/l2tpproxy/l2tpproxy/tunnel/capture"
)

const capturesDir = "../../testdata/captures"

// capturedIKE is one ISAKMP message found in a capture.
type capturedIKE struct {
	src, dst netip.AddrPort
	natt     bool // arrived on port 4500 (non-ESP marker stripped)
	msg      []byte
}

// readCapturedIKE returns the ISAKMP messages of a capture's outer.pcap: UDP
// to/from 500 or 4500. On 4500 the 4-byte non-ESP marker is stripped (RFC
// 3948 §2.2); ESP and NAT keepalives are skipped.
func readCapturedIKE(path string) ([]capturedIKE, error) {
	ds, err := capture.Datagrams(path)
	if err != nil {
		return nil, err
	}
	var out []capturedIKE
	for _, d := range ds {
		sp, dp := d.Src.Port(), d.Dst.Port()
		payload := d.Payload
		natt := false
		switch {
		case sp == 4500 || dp == 4500:
			if len(payload) < 4 || binary.BigEndian.Uint32(payload) != 0 {
				continue // ESP or keepalive
			}
			payload = payload[4:]
			natt = true
		case sp == 500 || dp == 500:
		default:
			continue
		}
		out = append(out, capturedIKE{src: d.Src, dst: d.Dst, natt: natt, msg: append([]byte(nil), payload...)})
	}
	return out, nil
}

func captureDirs(t testing.TB) []string {
	out, err := capture.Sessions(capturesDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 3 {
		t.Fatalf("found %d capture dirs, want 3", len(out))
	}
	return out
}

// TestCaptureParse: every IKE message in the three outer.pcaps parses.
func TestCaptureParse(t *testing.T) {
	for _, d := range captureDirs(t) {
		pkts, err := readCapturedIKE(filepath.Join(d, "outer.pcap"))
		if err != nil {
			t.Fatal(err)
		}
		if len(pkts) < 10 {
			t.Fatalf("%s: only %d IKE packets", d, len(pkts))
		}
		for i, p := range pkts {
			m, err := Parse(p.msg)
			if err != nil {
				t.Errorf("%s #%d: %v", filepath.Base(d), i, err)
				continue
			}
			if m.Flags&FlagEncryption == 0 {
				for _, pl := range m.Payloads {
					if pl.Type == PayloadSA {
						if _, err := ParseSA(pl.Body); err != nil {
							t.Errorf("%s #%d SA: %v", filepath.Base(d), i, err)
						}
					}
				}
			}
		}
	}
}

// TestCaptureReplay recomputes the whole IKE side of each real session with
// this package's code: SKEYIDs, MM5/MM6 decryption with HASH_I/HASH_R, every
// Quick Mode's HASH(1)/(2)/(3), every Informational's HASH(1), and the ESP
// keys of the first Quick Mode from KEYMAT.
func TestCaptureReplay(t *testing.T) {
	for _, d := range captureDirs(t) {
		t.Run(filepath.Base(d), func(t *testing.T) { replayCapture(t, d) })
	}
}

func replayCapture(t *testing.T, dir string) {
	k, err := capture.LoadKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	pkts, err := readCapturedIKE(filepath.Join(dir, "outer.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	// Deduplicate retransmissions, keep order.
	seen := map[string]bool{}
	var msgs []capturedIKE
	for _, p := range pkts {
		if !seen[string(p.msg)] {
			seen[string(p.msg)] = true
			msgs = append(msgs, p)
		}
	}
	first, err := Parse(msgs[0].msg)
	if err != nil || first.RCookie != ([8]byte{}) || first.Exchange != ExchangeIdentityProtection {
		t.Fatalf("first message is not MM1: %v", err)
	}
	client := msgs[0].src.Addr()

	var mm1, mm2, mm3, mm4, mm5, mm6 *Message
	var rest []*Message
	var restFromClient []bool
	for _, p := range msgs {
		m, err := Parse(p.msg)
		if err != nil {
			t.Fatal(err)
		}
		fromClient := p.src.Addr() == client
		if m.Exchange == ExchangeIdentityProtection {
			enc := m.Flags&FlagEncryption != 0
			switch {
			case !enc && fromClient && First(m.Payloads, PayloadSA) != nil:
				mm1 = m
			case !enc && !fromClient && First(m.Payloads, PayloadSA) != nil:
				mm2 = m
			case !enc && fromClient && First(m.Payloads, PayloadKE) != nil:
				mm3 = m
			case !enc && !fromClient && First(m.Payloads, PayloadKE) != nil:
				mm4 = m
			case enc && fromClient && mm5 == nil:
				if p.natt != true {
					t.Error("MM5 not sent on 4500")
				}
				mm5 = m
			case enc && !fromClient && mm6 == nil:
				mm6 = m
			}
			continue
		}
		rest = append(rest, m)
		restFromClient = append(restFromClient, fromClient)
	}
	if mm1 == nil || mm2 == nil || mm3 == nil || mm4 == nil || mm5 == nil || mm6 == nil {
		t.Fatal("incomplete main mode")
	}
	if !bytes.Equal(mm2.ICookie[:], k.ICookie) || !bytes.Equal(mm2.RCookie[:], k.RCookie) {
		t.Fatal("cookies differ from keys.json")
	}
	// Phase-1 suite from MM2.
	sa2, err := ParseSA(First(mm2.Payloads, PayloadSA).Body)
	if err != nil {
		t.Fatal(err)
	}
	tr, ok := p1FromTransform(&sa2.Proposals[0].Transforms[0])
	if !ok {
		t.Fatal("MM2 transform not understood")
	}
	if tr.String() != "AES-CBC-256/HMAC-SHA2-256/MODP2048" {
		t.Fatalf("suite %s", tr)
	}
	if l := lifetimeOf(sa2.Proposals[0].Transforms[0].Attrs, attrLifeType, attrLifeDur); l <= 0 {
		t.Errorf("no phase-1 lifetime in MM2")
	}
	if nat, dpd := vendorNAT(mm2.Payloads); nat != natRFC || !dpd {
		t.Errorf("MM2 VIDs: nat %v dpd %v", nat, dpd)
	}
	suite, _ := ikev1.NewSuite(ikev1.HashAlg(tr.Hash))
	saiB := First(mm1.Payloads, PayloadSA).Body
	gxi, ni := First(mm3.Payloads, PayloadKE).Body, First(mm3.Payloads, PayloadNonce).Body
	gxr, nr := First(mm4.Payloads, PayloadKE).Body, First(mm4.Payloads, PayloadNonce).Body
	if !bytes.Equal(gxi, k.GXI) || !bytes.Equal(nr, k.Nr) {
		t.Fatal("KE/nonce differ from keys.json")
	}
	if n := len(All(mm3.Payloads, PayloadNATD)); n != 2 {
		t.Errorf("MM3 has %d NAT-D", n)
	}
	ckyI, ckyR := mm2.ICookie[:], mm2.RCookie[:]
	skeyid := suite.SKEYIDPSK(k.PSK, ni, nr)
	ks := suite.DeriveKeys(skeyid, k.GXY, ckyI, ckyR)
	if !bytes.Equal(ks.SKEYID, k.SKEYID) || !bytes.Equal(ks.D, k.SKEYIDd) ||
		!bytes.Equal(ks.A, k.SKEYIDa) || !bytes.Equal(ks.E, k.SKEYIDe) {
		t.Fatal("SKEYIDs differ")
	}
	keyLen, bs, _ := p1KeyLen(tr.Enc, tr.KeyBits)
	ka := suite.EncryptionKey(ks.E, keyLen)
	if !bytes.Equal(ka, k.Ka) {
		t.Fatal("Ka differs")
	}
	blk, _ := newP1Block(tr.Enc, ka)
	iv0 := suite.Phase1IV(gxi, gxr, bs)
	if !bytes.Equal(iv0, k.IVMM5) {
		t.Fatal("MM5 IV differs")
	}
	ivs := newIVManager(suite, blk, iv0)
	e := &ikeSA{ivs: ivs, suite: suite, keys: ks}

	// MM5 / MM6.
	d5, err := e.decryptMsg(mm5)
	if err != nil {
		t.Fatal(err)
	}
	id5 := First(d5.payloads, PayloadID)
	if !hmac.Equal(First(d5.payloads, PayloadHash).Body, suite.HashI(skeyid, gxi, gxr, ckyI, ckyR, saiB, id5.Body)) {
		t.Fatal("HASH_I does not verify")
	}
	ivs.set(0, d5.nextIV)
	d6, err := e.decryptMsg(mm6)
	if err != nil {
		t.Fatal(err)
	}
	id6 := First(d6.payloads, PayloadID)
	if !hmac.Equal(First(d6.payloads, PayloadHash).Body, suite.HashR(skeyid, gxi, gxr, ckyI, ckyR, saiB, id6.Body)) {
		t.Fatal("HASH_R does not verify")
	}
	ivs.set(0, d6.nextIV)
	ivs.freeze()
	if id, err := ParseID(id5.Body); err != nil || id.Type != IDIPv4Addr || len(id.Data) != 4 {
		t.Errorf("IDii %+v %v", id, err)
	}

	// Quick Mode and Informational exchanges.
	type qmTrack struct {
		ni, nr   []byte
		iSPI     uint32 // SPI in QM1 (initiator's inbound)
		rSPI     uint32
		alg      string
		n        int
		byClient bool
	}
	qms := map[uint32]*qmTrack{}
	var qmOrder []uint32
	infos, qmDone := 0, 0
	for i, m := range rest {
		if m.Flags&FlagEncryption == 0 {
			t.Errorf("cleartext %d exchange after phase 1", m.Exchange)
			continue
		}
		d, err := e.decryptMsg(m)
		if err != nil {
			t.Fatalf("exchange %d mid %08x: %v", m.Exchange, m.MessageID, err)
		}
		hash, after, ok := d.hashRest()
		if !ok {
			t.Fatalf("mid %08x: no HASH first", m.MessageID)
		}
		switch m.Exchange {
		case ExchangeInformational:
			if !hmac.Equal(hash, suite.QMHash1(ks.A, m.MessageID, after)) {
				t.Fatalf("informational %08x: HASH(1) does not verify", m.MessageID)
			}
			for _, p := range d.payloads[1:] {
				switch p.Type {
				case PayloadNotify:
					if _, err := ParseNotify(p.Body); err != nil {
						t.Error(err)
					}
				case PayloadDelete:
					if _, err := ParseDelete(p.Body); err != nil {
						t.Error(err)
					}
				}
			}
			infos++
		case ExchangeQuickMode:
			q := qms[m.MessageID]
			if q == nil {
				q = &qmTrack{byClient: restFromClient[i]}
				qms[m.MessageID] = q
				qmOrder = append(qmOrder, m.MessageID)
			}
			switch q.n {
			case 0:
				if !hmac.Equal(hash, suite.QMHash1(ks.A, m.MessageID, after)) {
					t.Fatalf("QM %08x: HASH(1) does not verify", m.MessageID)
				}
				q.ni = First(d.payloads, PayloadNonce).Body
				sa, err := ParseSA(First(d.payloads, PayloadSA).Body)
				if err != nil {
					t.Fatal(err)
				}
				q.iSPI = binary.BigEndian.Uint32(sa.Proposals[0].SPI)
			case 1:
				if !hmac.Equal(hash, suite.QMHash2(ks.A, m.MessageID, q.ni, after)) {
					t.Fatalf("QM %08x: HASH(2) does not verify", m.MessageID)
				}
				q.nr = First(d.payloads, PayloadNonce).Body
				sa, err := ParseSA(First(d.payloads, PayloadSA).Body)
				if err != nil {
					t.Fatal(err)
				}
				q.rSPI = binary.BigEndian.Uint32(sa.Proposals[0].SPI)
				tr, ok := p2FromTransform(&sa.Proposals[0].Transforms[0])
				if !ok || tr.encap != EncapUDPTransport || tr.group != 0 {
					t.Fatalf("QM2 transform %+v", tr)
				}
				q.alg = tr.alg.String()
				for _, oa := range All(d.payloads, PayloadNATOA) {
					if _, err := ParseNATOA(oa.Body); err != nil {
						t.Error(err)
					}
				}
			case 2:
				if !hmac.Equal(hash, suite.QMHash3(ks.A, m.MessageID, q.ni, q.nr)) {
					t.Fatalf("QM %08x: HASH(3) does not verify", m.MessageID)
				}
				qmDone++
			}
			q.n++
		}
		ivs.set(m.MessageID, d.nextIV)
	}
	if qmDone == 0 || infos == 0 {
		t.Fatalf("verified %d quick modes, %d informationals", qmDone, infos)
	}
	// KEYMAT of the first (client-initiated) Quick Mode gives the kernel's ESP keys.
	q := qms[qmOrder[0]]
	if !q.byClient || q.alg != "AES-CBC-128/HMAC-SHA1-96" {
		t.Fatalf("first QM: byClient %v alg %s", q.byClient, q.alg)
	}
	c2s, s2c := k.ESP["client_to_server"], k.ESP["server_to_client"]
	for _, c := range []struct {
		spi        uint32
		wantSPI    uint32
		enc, integ []byte
	}{{q.rSPI, c2s.SPI, c2s.EncKey, c2s.AuthKey}, {q.iSPI, s2c.SPI, s2c.EncKey, s2c.AuthKey}} {
		if c.spi != c.wantSPI {
			t.Fatalf("SPI %08x, keys.json %08x", c.spi, c.wantSPI)
		}
		km := suite.Keymat(ks.D, nil, 3, c.spi, q.ni, q.nr, 36)
		if !bytes.Equal(km[:16], c.enc) || !bytes.Equal(km[16:], c.integ) {
			t.Errorf("KEYMAT for %08x differs", c.spi)
		}
	}
	t.Logf("verified MM, %d quick modes, %d informationals", qmDone, infos)
	if !bytes.Equal(ckyI, mm1.ICookie[:]) {
		t.Fatal("cookie mismatch")
	}
}
