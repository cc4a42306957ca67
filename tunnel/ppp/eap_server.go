package ppp

import (
	"crypto/subtle"
	"fmt"
	"io"
	"time"

	"github.com/l2tpproxy/l2tpproxy/crypto/mschap"
)

// EAP conversation stages of the test server.
const (
	eapStageIdentity = iota
	eapStageMethod
	eapStageResult // EAP-MSCHAPv2: Success/Failure Request sent, waiting for the peer's acknowledgement
)

// eapServer is the authenticator side of one EAP conversation: Identity,
// then the configured method (RFC 3748 §2).
type eapServer struct {
	stage int
	id    byte   // Identifier of the outstanding Request
	req   []byte // its Type | Type-Data, retransmitted on timeout
	msID  byte   // EAP-MSCHAPv2 MS-CHAPv2-ID
	ok    bool   // EAP-MSCHAPv2: the NT-Response was right
	user  string
}

func (s *Server) eapStart() error {
	if _, err := io.ReadFull(s.rnd, s.challenge[:]); err != nil {
		return fmt.Errorf("ppp: random challenge: %w", err)
	}
	s.eap = eapServer{}
	s.eapRequest(append([]byte{eapTypeIdentity}, "Welcome"...))
	return nil
}

// eapRequest sends a new Request (fresh Identifier, RFC 3748 §4.1).
func (s *Server) eapRequest(data []byte) {
	s.eap.id = s.nextID()
	s.eap.req = data
	s.chapLeft = s.maxConfigure
	s.eapResend()
}

func (s *Server) eapResend() {
	s.chapLeft--
	s.authDL = s.clk.Now().Add(s.restart)
	s.sendPacket(protoEAP, eapRequest, s.eap.id, s.eap.req)
}

func (s *Server) eapInput(p packet) error {
	if p.code != eapResponse || p.id != s.eap.id || s.authDone {
		return nil
	}
	typ, td, err := parseEAPTyped(p.data)
	if err != nil {
		return nil
	}
	e := &s.eap
	switch {
	case typ == eapTypeNak && s.method == AuthEAP:
		// SoftEther 5.01: Protocol-Reject the Nak, then ask for the next
		// method in a new LCP Configure-Request.
		n := 4 + len(p.data)
		s.sendPacket(protoLCP, codeProtoRej, s.nextID(), []byte{0xc2, 0x27, eapResponse, p.id, byte(n >> 8), byte(n)}, p.data)
		return s.restartLCP()
	case typ == eapTypeNak:
		s.authDL = time.Time{}
		s.sendPacket(protoEAP, eapFailure, p.id)
		s.sendPacket(protoLCP, codeTermReq, s.nextID(), []byte("EAP method refused"))
		return fmt.Errorf("%w: client refused %s", ErrAuthRejected, s.method)
	case e.stage == eapStageIdentity && typ == eapTypeIdentity:
		e.user = string(td)
		e.stage = eapStageMethod
		name := []byte(s.cfg.Name)
		switch s.method {
		case AuthEAP:
			s.eapRequest([]byte{eapTypeTLS, 0x20}) // EAP-TLS Start (RFC 5216 §2.1.1)
		case AuthEAPMD5:
			s.eapRequest(append(append([]byte{eapTypeMD5, mschap.ChallengeLen}, s.challenge[:]...), name...))
		case AuthEAPMSCHAPv2:
			e.msID = s.nextID() // any value; echoed by the peer
			s.eapRequest(appendMSPacket(nil, msOpChallenge, e.msID, []byte{mschap.ChallengeLen}, s.challenge[:], name))
		}
	case e.stage == eapStageMethod && typ == eapTypeMD5 && s.method == AuthEAPMD5:
		v, err := parseCHAPValue(td)
		if err != nil {
			return nil
		}
		user := string(v.name)
		pw, known := s.password(user)
		want := mschap.CHAPMD5Response(p.id, pw, s.challenge[:])
		if !known || subtle.ConstantTimeCompare(v.value, want[:]) != 1 {
			s.sendPacket(protoEAP, eapFailure, p.id)
			return s.failAuth(user)
		}
		s.sendPacket(protoEAP, eapSuccess, p.id)
		return s.authOK(user)
	case typ == eapTypeMSCHAPv2 && s.method == AuthEAPMSCHAPv2:
		return s.eapMSCHAPv2(p.id, td)
	}
	return nil
}

func (s *Server) eapMSCHAPv2(id byte, td []byte) error {
	e := &s.eap
	ms, err := parseEAPMSCHAPv2(td)
	if err != nil {
		return nil
	}
	switch {
	case e.stage == eapStageMethod && ms.op == msOpResponse && ms.id == e.msID:
		v, err := parseCHAPValue(ms.data)
		if err != nil {
			return nil
		}
		peerChal, nt, _, err := mschap.ParseResponseValue(v.value)
		if err != nil {
			return nil
		}
		e.user = string(v.name)
		pw, known := s.password(e.user)
		want := mschap.GenerateNTResponse(s.challenge, peerChal, e.user, pw)
		e.stage = eapStageResult
		if !known || subtle.ConstantTimeCompare(nt[:], want[:]) != 1 {
			msg := mschap.FormatFailure(691, false, s.challenge, 3, "Authentication failed")
			s.eapRequest(appendMSPacket(nil, msOpFailure, e.msID, []byte(msg)))
			return nil
		}
		e.ok = true
		ar := mschap.GenerateAuthenticatorResponse(pw, nt, peerChal, s.challenge, e.user)
		if s.cfg.badAuthenticator {
			ar[0] ^= 0x80
		}
		s.eapRequest(appendMSPacket(nil, msOpSuccess, e.msID, []byte(mschap.FormatAuthenticatorResponse(ar)+" M=Access granted")))
	case e.stage == eapStageResult && ms.op == msOpSuccess && e.ok:
		s.sendPacket(protoEAP, eapSuccess, id)
		return s.authOK(e.user)
	case e.stage == eapStageResult && ms.op == msOpFailure:
		s.sendPacket(protoEAP, eapFailure, id)
		return s.failAuth(e.user)
	}
	return nil
}

// restartLCP renegotiates LCP with the next method (SoftEther after an EAP Nak).
func (s *Server) restartLCP() error {
	s.phase = phaseEstablish
	s.authDL = time.Time{}
	s.eap = eapServer{}
	s.seqIdx = min(s.seqIdx+1, len(s.sequence)-1)
	s.method = s.sequence[s.seqIdx]
	s.lcp.state = stReqSent
	s.lcp.newRequest()
	return nil
}
