package ike

// maxSAs bounds the table: the SA carrying traffic, one being negotiated to
// replace it, and a few half-open ones a peer may start.
const maxSAs = 4

// saTable holds the ISAKMP SAs of one Run goroutine, found by their cookies
// (RFC 2408 §2.5.3: the cookie pair names the ISAKMP SA), so that a new SA
// can be negotiated while the old one still carries traffic. Oldest first.
type saTable struct{ sas []*ikeSA }

// lookup finds the SA a message belongs to: the initiator cookie must
// match, and the responder cookie too once both sides know it (MM1 and
// cleartext notifies before MM2 carry zero).
func (t *saTable) lookup(ckyI, ckyR [8]byte) *ikeSA {
	for _, sa := range t.sas {
		if sa.ckyI != ckyI {
			continue
		}
		if sa.ckyR == ([8]byte{}) || ckyR == ([8]byte{}) || ckyR == sa.ckyR {
			return sa
		}
	}
	return nil
}

// add inserts sa, evicting the oldest SA that is not up when full. It
// reports false if every slot holds an established SA.
func (t *saTable) add(sa *ikeSA) bool {
	if len(t.sas) >= maxSAs {
		evicted := false
		for i, old := range t.sas {
			if !old.up {
				t.sas = append(t.sas[:i], t.sas[i+1:]...)
				evicted = true
				break
			}
		}
		if !evicted {
			return false
		}
	}
	t.sas = append(t.sas, sa)
	return true
}

func (t *saTable) remove(sa *ikeSA) {
	for i, s := range t.sas {
		if s == sa {
			t.sas = append(t.sas[:i], t.sas[i+1:]...)
			return
		}
	}
}

// current is the newest established SA: the one new exchanges (Quick
// Modes, DPD, Deletes) use. nil if none is up.
func (t *saTable) current() *ikeSA {
	for i := len(t.sas) - 1; i >= 0; i-- {
		if t.sas[i].up {
			return t.sas[i]
		}
	}
	return nil
}

// anyUp reports whether some SA finished Main Mode.
func (t *saTable) anyUp() bool { return t.current() != nil }

// all returns the SAs, oldest first (a copy: handlers may remove entries).
func (t *saTable) all() []*ikeSA { return append([]*ikeSA(nil), t.sas...) }
