package esp

import "errors"

// Batch holds the packets SealTo framed whose AES-CBC encryption and ICV
// are still to be computed. The zero value is ready to use; a Batch is not
// safe for concurrent use (its user serialises sealing and sending).
type Batch struct {
	pending   []deferred
	msgs, ivs [][]byte // scratch for aescbc.Cipher.EncryptBatch
}

type deferred struct {
	s   *suite
	pkt []byte // SPI | Seq | IV | body | room for the ICV
}

// errBatch would mean a framed packet that is not whole blocks: a bug.
var errBatch = errors.New("esp: a deferred packet could not be encrypted")

// Len returns the number of packets waiting for Finish.
func (b *Batch) Len() int { return len(b.pending) }

// Finish encrypts (RFC 3602: AES-CBC) and authenticates (encrypt-then-MAC,
// RFC 4303 §3.3.4) every packet SealTo added, runs of packets of the same
// SA four at a time, and empties b. On an error, which would be a bug,
// some packets are not encrypted: the caller must send none of them.
func (b *Batch) Finish() error {
	var err error
	for rest := b.pending; len(rest) > 0; {
		s := rest[0].s
		n := 1
		for n < len(rest) && rest[n].s == s {
			n++
		}
		group := rest[:n]
		rest = rest[n:]
		hr := hdrLen + s.ivLen
		b.msgs, b.ivs = b.msgs[:0], b.ivs[:0]
		for _, d := range group {
			b.msgs = append(b.msgs, d.pkt[hr:len(d.pkt)-s.icvLen])
			b.ivs = append(b.ivs, d.pkt[hdrLen:hr])
		}
		if s.aesCBC.EncryptBatch(b.msgs, b.ivs) != nil {
			err = errBatch
			continue
		}
		w := s.pool.Get().(*work)
		for _, d := range group {
			icv := len(d.pkt) - s.icvLen
			copy(d.pkt[icv:], s.macSum(w, d.pkt[:icv]))
		}
		s.pool.Put(w)
	}
	clear(b.pending) // do not keep the packets' buffers reachable
	clear(b.msgs)
	clear(b.ivs)
	b.pending = b.pending[:0]
	return err
}
