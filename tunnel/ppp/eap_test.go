package ppp

import (
	"bytes"
	"encoding/hex"
	"testing"
)

// eapPeer is a Client in the authentication phase with EAP agreed, whose
// sent frames are collected; its randomness is exactly rnd.
func eapPeer(t *testing.T, user, password string, rnd []byte) (*Client, *[][]byte) {
	t.Helper()
	var sent [][]byte
	c := NewClient(Config{User: user, Password: []byte(password), Clock: newFake(), Rand: newSeeded(3)},
		func(b []byte) error { sent = append(sent, bytes.Clone(b)); return nil })
	c.rnd = bytes.NewReader(rnd)
	c.lcp.state = stOpened
	c.authMethod = AuthEAP
	if err := c.lcpUp(); err != nil {
		t.Fatal(err)
	}
	return c, &sent
}

// eapSend feeds the client one EAP packet and returns the packets it sent.
func eapSend(t *testing.T, c *Client, sent *[][]byte, code, id byte, data []byte) ([]packet, error) {
	t.Helper()
	*sent = (*sent)[:0]
	err := c.input(appendPacket(nil, protoEAP, code, id, data))
	var out []packet
	for _, f := range *sent {
		if p, info, _ := DecodeFrame(f); p == protoEAP {
			pk, perr := parsePacket(info)
			if perr != nil {
				t.Fatal(perr)
			}
			out = append(out, pk)
		}
	}
	return out, err
}

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Known answer: the RFC 2759 §9.2 sample (testdata/vectors/mschapv2_rfc2759_rfc3079.json)
// carried in EAP-MSCHAPv2 (draft-kamath-pppext-eap-mschapv2-02 §2).
func TestEAPMSCHAPv2KnownAnswer(t *testing.T) {
	authChal := unhex(t, "5B5D7C7D7B3F2F3E3C2C602132262628")
	peerChal := unhex(t, "21402324255E262A28295F2B3A337C7E")
	ntResp := unhex(t, "82309ECD8D708B5EA08FAA3981CD83544233114A3D85D6DF")
	c, sent := eapPeer(t, "User", "clientPass", peerChal)

	out, err := eapSend(t, c, sent, eapRequest, 7, appendMSPacket(nil, msOpChallenge, 0x42, []byte{16}, authChal, []byte("srv")))
	if err != nil || len(out) != 1 {
		t.Fatalf("%v %v", out, err)
	}
	want := appendMSPacket(nil, msOpResponse, 0x42, []byte{49}, peerChal, make([]byte, 8), ntResp, []byte{0}, []byte("User"))
	if out[0].code != eapResponse || out[0].id != 7 || !bytes.Equal(out[0].data, want) {
		t.Fatalf("response %d %d\n got %x\nwant %x", out[0].code, out[0].id, out[0].data, want)
	}
	out, err = eapSend(t, c, sent, eapRequest, 8, appendMSPacket(nil, msOpSuccess, 0x42, []byte("S=407A5589115FD0D6209F510FE9C04566932CDA56 M=welcome")))
	if err != nil || len(out) != 1 || out[0].id != 8 || !bytes.Equal(out[0].data, []byte{eapTypeMSCHAPv2, msOpSuccess}) {
		t.Fatalf("success ack %v %v", out, err)
	}
	if _, err := eapSend(t, c, sent, eapSuccess, 8, nil); err != nil {
		t.Fatal(err)
	}
	if a, _ := (<-c.Events()).(LinkUp); a != (LinkUp{}) {
		t.Fatal("no LinkUp first")
	}
	if a, ok := (<-c.Events()).(AuthUp); !ok || a.Method != AuthEAPMSCHAPv2 || a.Message != "welcome" {
		t.Fatalf("AuthUp %+v", a)
	}
}

// A wrong S= (here the RFC value with one bit flipped) is refused; an
// EAP-Success that comes without the S= step is refused too.
func TestEAPMSCHAPv2ServerMustProve(t *testing.T) {
	authChal := unhex(t, "5B5D7C7D7B3F2F3E3C2C602132262628")
	peerChal := unhex(t, "21402324255E262A28295F2B3A337C7E")
	for _, tc := range []struct {
		name    string
		success []byte
	}{
		{"bad-S", appendMSPacket(nil, msOpSuccess, 1, []byte("S=507A5589115FD0D6209F510FE9C04566932CDA56 M=x"))},
		{"no-S", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, sent := eapPeer(t, "User", "clientPass", peerChal)
			if _, err := eapSend(t, c, sent, eapRequest, 1, appendMSPacket(nil, msOpChallenge, 1, []byte{16}, authChal)); err != nil {
				t.Fatal(err)
			}
			var err error
			if tc.success != nil {
				_, err = eapSend(t, c, sent, eapRequest, 2, tc.success)
			} else {
				_, err = eapSend(t, c, sent, eapSuccess, 1, nil)
			}
			if !errIs(err, ErrAuthFailed) {
				t.Fatalf("got %v", err)
			}
		})
	}
}

// EAP-MD5 (RFC 3748 §5.4): Response = MD5(Identifier | secret | challenge)
// as in CHAP; the values are testdata/vectors/chap_md5_computed.json
// (computed: RFC 1994 publishes none).
func TestEAPMD5KnownAnswer(t *testing.T) {
	c, sent := eapPeer(t, "vpnuser", "secret", nil)
	out, err := eapSend(t, c, sent, eapRequest, 1, append([]byte{eapTypeMD5, 16}, unhex(t, "000102030405060708090a0b0c0d0e0f")...))
	want := append(append([]byte{eapTypeMD5, 16}, unhex(t, "740e86463bda3a4d7017d6e0fba0699d")...), "vpnuser"...)
	if err != nil || len(out) != 1 || out[0].id != 1 || !bytes.Equal(out[0].data, want) {
		t.Fatalf("%v %v, want %x", out, err, want)
	}
	if _, err := eapSend(t, c, sent, eapSuccess, 1, nil); err != nil || !c.authDone {
		t.Fatalf("success: %v", err)
	}
}

// Notification is answered with an empty Response; a Request whose Type is
// Nak, or that is empty, is ignored; EAP-Failure after a method is a
// password failure.
func TestEAPNotificationAndFailure(t *testing.T) {
	c, sent := eapPeer(t, "vpnuser", "x", nil)
	out, err := eapSend(t, c, sent, eapRequest, 1, []byte("\x02Password expires soon"))
	if err != nil || len(out) != 1 || !bytes.Equal(out[0].data, []byte{eapTypeNotification}) {
		t.Fatalf("%v %v", out, err)
	}
	for _, bad := range [][]byte{nil, {eapTypeNak, 4}, {eapTypeMSCHAPv2, 1, 0}, {eapTypeMD5, 0}} {
		if out, err := eapSend(t, c, sent, eapRequest, 2, bad); err != nil || len(out) != 0 {
			t.Errorf("%x: %v %v", bad, out, err)
		}
	}
	if _, err := eapSend(t, c, sent, eapRequest, 3, []byte{eapTypeMD5, 1, 9}); err != nil {
		t.Fatal(err)
	}
	if _, err := eapSend(t, c, sent, eapFailure, 3, nil); !errIs(err, ErrAuthFailed) || AsAuthRefused(err) != nil {
		t.Fatalf("got %v", err)
	}
}
