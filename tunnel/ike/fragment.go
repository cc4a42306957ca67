package ike

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"time"
)

// IKEv1 fragmentation, Cisco's proprietary scheme that Windows, strongSwan
// and Libreswan share (there is no RFC; RFC 7383 is the IKEv2 one). A peer
// announces it with the "FRAGMENTATION" vendor ID; then a message that is
// too large for the path is sent as several messages, each the original
// ISAKMP header (Next Payload 132, the Encryption flag cleared) and one
// Fragment payload:
//
//	Next Payload | RESERVED | Payload Length (2)
//	Fragment ID (2) | Fragment Number (1, from 1) | Flags (1, 0x01 last)
//	Fragment Data: a slice of the whole original message, header included
//
// (strongSwan encoding/payloads/fragment_payload.c, Libreswan
// ikev1_send.c/ikev1_msgid). Certificate messages (MM5/MM6 with a chain and
// a 2048- or 4096-bit signature) exceed a 1500-byte path MTU, and IP
// fragments are often dropped by NATs and firewalls.

// vidFragmentation is the vendor ID as strongSwan and Cisco send it: 16
// bytes and a 4-byte capability field (0x80000000: fragmentation in
// phase 1). Libreswan and strongSwan match its first 16 bytes only.
var vidFragmentation = []byte{0x40, 0x48, 0xb7, 0xd5, 0x6e, 0xbc, 0xe8, 0x85, 0x25, 0xe7, 0xde, 0x7f, 0x00, 0xd6, 0xc2, 0xd3, 0x80, 0x00, 0x00, 0x00}

const (
	// defaultFragmentSize is the largest ISAKMP message (or fragment
	// message) we send whole: with IP, UDP and the non-ESP marker it stays
	// below 1280 bytes, the IPv6 minimum MTU, as strongSwan's default
	// charon.fragment_size does.
	defaultFragmentSize = 1200
	minFragmentSize     = HeaderLen + 8 + 64
	fragHeaderLen       = 8 // generic header + ID + number + flags
	fragLast            = 0x01

	// Bounds of reassembly, so that hostile input cannot grow memory:
	// fragments per message (Libreswan sends at most 16), bytes per
	// message, messages in reassembly at once, and how long a partial one
	// is kept.
	maxFragments    = 32
	maxReassembled  = 64 << 10
	maxReassemblies = 4
	fragTimeout     = 30 * time.Second
)

// hasFragmentationVID reports whether the peer announced fragmentation.
func hasFragmentationVID(ps []Payload) bool {
	for _, p := range All(ps, PayloadVendorID) {
		if len(p.Body) >= 16 && bytes.Equal(p.Body[:16], vidFragmentation[:16]) {
			return true
		}
	}
	return false
}

// addFragmentationVID announces fragmentation in MM1/MM2 when we
// authenticate with certificates (PSK messages stay well below any MTU,
// and PSK MM1 stays as it was).
func addFragmentationVID(r *runner, b *builder) {
	if certAuthOf(r) != nil {
		b.add(PayloadVendorID, vidFragmentation)
	}
}

// fragmentMessage splits msg into fragment messages of at most size bytes
// each, with fragment ID id; nil if msg fits or cannot be fragmented.
func fragmentMessage(msg []byte, size int, id uint16) [][]byte {
	if len(msg) <= size || len(msg) < HeaderLen {
		return nil
	}
	size = max(size, minFragmentSize)
	chunk := size - HeaderLen - fragHeaderLen
	n := (len(msg) + chunk - 1) / chunk
	if n > maxFragments {
		return nil
	}
	h, err := ParseHeader(msg)
	if err != nil {
		return nil
	}
	out := make([][]byte, 0, n)
	for i := 0; i < n; i++ {
		data := msg[i*chunk : min((i+1)*chunk, len(msg))]
		var flags uint8
		if i == n-1 {
			flags = fragLast
		}
		fh := h
		fh.NextPayload = PayloadFragment
		fh.Flags &^= FlagEncryption
		fh.Length = uint32(HeaderLen + fragHeaderLen + len(data))
		f := fh.AppendTo(make([]byte, 0, fh.Length))
		f = append(f, PayloadNone, 0)
		f = binary.BigEndian.AppendUint16(f, uint16(fragHeaderLen+len(data)))
		f = binary.BigEndian.AppendUint16(f, id)
		f = append(f, byte(i+1), flags)
		out = append(out, append(f, data...))
	}
	return out
}

// writeMaybeFragmented sends msg, as fragments if the peer announced
// fragmentation and msg exceeds the fragment size.
func (sa *ikeSA) writeMaybeFragmented(msg []byte, natt bool) bool {
	if !sa.peerFrag {
		return false
	}
	r := sa.r
	r.fragID++
	frags := fragmentMessage(msg, r.fragSizeOrDefault(), r.fragID)
	if frags == nil {
		return false
	}
	r.log.Debug("ike: sending a message in fragments", "bytes", len(msg), "fragments", len(frags))
	for _, f := range frags {
		if err := r.tr.WriteIKE(f, natt); err != nil {
			r.log.Debug("ike: write failed", "err", err)
		}
	}
	return true
}

func (r *runner) fragSizeOrDefault() int {
	if r.fragSize > 0 {
		return r.fragSize
	}
	return defaultFragmentSize
}

type fragKey struct {
	ckyI, ckyR [8]byte
	id         uint16
}

type partial struct {
	key     fragKey
	parts   [maxFragments + 1][]byte // by fragment number
	last    int                      // number of the last fragment, 0 until seen
	have    int
	size    int
	started time.Time
}

// reassembler collects fragments into messages, within the bounds above.
// It is owned by the Run goroutine.
type reassembler struct {
	bufs []*partial
}

// add takes one fragment message (already parsed as m); it returns the
// reassembled message once every fragment arrived, else nil. Fragments of
// an expired or evicted reassembly are dropped; a bad fragment is an error
// (the caller logs and drops it).
func (f *reassembler) add(m *Message, now time.Time) ([]byte, error) {
	p := First(m.Payloads, PayloadFragment)
	if p == nil || len(p.Body) < fragHeaderLen-genericHeaderLength {
		return nil, fmt.Errorf("%w: no fragment payload", ErrMalformed)
	}
	id := binary.BigEndian.Uint16(p.Body[0:2])
	num := int(p.Body[2])
	last := p.Body[3]&fragLast != 0
	data := p.Body[4:]
	if num == 0 || num > maxFragments {
		return nil, fmt.Errorf("%w: fragment number %d", ErrMalformed, num)
	}
	// Drop what has timed out.
	kept := f.bufs[:0]
	for _, b := range f.bufs {
		if now.Sub(b.started) < fragTimeout {
			kept = append(kept, b)
		}
	}
	clear(f.bufs[len(kept):])
	f.bufs = kept
	key := fragKey{ckyI: m.ICookie, ckyR: m.RCookie, id: id}
	var b *partial
	for _, c := range f.bufs {
		if c.key == key {
			b = c
			break
		}
	}
	if b == nil {
		if len(f.bufs) >= maxReassemblies {
			f.bufs = append(f.bufs[:0], f.bufs[1:]...) // evict the oldest
		}
		b = &partial{key: key, started: now}
		f.bufs = append(f.bufs, b)
	}
	if b.parts[num] != nil {
		return nil, nil // duplicate (a retransmission)
	}
	if (b.last != 0 && num > b.last) || (last && b.last != 0) || (last && b.have > 0 && b.maxNum() > num) {
		f.drop(b)
		return nil, fmt.Errorf("%w: inconsistent fragment numbers", ErrMalformed)
	}
	if b.size+len(data) > maxReassembled {
		f.drop(b)
		return nil, fmt.Errorf("%w: reassembled message over %d bytes", ErrMalformed, maxReassembled)
	}
	b.parts[num] = append([]byte(nil), data...)
	b.have++
	b.size += len(data)
	if last {
		b.last = num
	}
	if b.last == 0 || b.have != b.last {
		return nil, nil
	}
	msg := make([]byte, 0, b.size)
	for i := 1; i <= b.last; i++ {
		msg = append(msg, b.parts[i]...)
	}
	f.drop(b)
	return msg, nil
}

func (b *partial) maxNum() int {
	for i := maxFragments; i > 0; i-- {
		if b.parts[i] != nil {
			return i
		}
	}
	return 0
}

func (f *reassembler) drop(b *partial) {
	for i, c := range f.bufs {
		if c == b {
			f.bufs = append(f.bufs[:i], f.bufs[i+1:]...)
			return
		}
	}
}

// pending reports the fragments held, for tests.
func (f *reassembler) held() (messages, bytes int) {
	for _, b := range f.bufs {
		messages++
		bytes += b.size
	}
	return
}

// defragment is the receive hook of runner.handle: a fragment is added to
// its reassembly; the whole message is returned when complete (ok), and
// nothing otherwise. Fragments are taken only for an SA we know.
func (r *runner) defragment(m *Message) (raw []byte, ok bool) {
	if r.sas.lookup(m.ICookie, m.RCookie) == nil {
		r.log.Debug("ike: dropping a fragment for no known SA")
		return nil, false
	}
	msg, err := r.frags.add(m, r.clk.Now())
	if err != nil {
		r.log.Debug("ike: dropping a fragment", "err", err)
		return nil, false
	}
	if msg == nil {
		return nil, false
	}
	r.log.Debug("ike: reassembled a fragmented message", "bytes", len(msg))
	return msg, true
}
