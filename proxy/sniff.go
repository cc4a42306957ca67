package proxy

import (
	"errors"
	"net"
	"sync/atomic"
)

// sniffListener wraps accepted connections in sniffConn.
type sniffListener struct{ net.Listener }

func (l sniffListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &sniffConn{Conn: c, st: framingSniffer{cand: 3}}, nil
}

// sniffConn watches what an HTTP client sends for a header block with both
// Content-Length and Transfer-Encoding, which net/http accepts (framing by
// Transfer-Encoding) but hides from the handler by deleting both fields.
// Body bytes are scanned too: a body line that looks like such a header
// can only make the proxy close a connection it could have kept, never
// the reverse.
type sniffConn struct {
	net.Conn
	st   framingSniffer // used only by the server's reading goroutine
	both atomic.Bool    // seen since the handler last looked
	off  atomic.Bool    // hijacked for a CONNECT tunnel: stop looking
}

func (c *sniffConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && !c.off.Load() && c.st.scan(p[:n]) {
		c.both.Store(true)
	}
	return n, err
}

func (c *sniffConn) CloseWrite() error {
	if cw, ok := c.Conn.(closeWriter); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// framingSniffer is a streaming matcher of header field names at the start
// of lines (RFC 9112 §5: field-name ":" with no space before the colon).
type framingSniffer struct {
	col          int   // position in the current line
	cand         uint8 // bit 0: may still be Content-Length, bit 1: Transfer-Encoding
	sawCL, sawTE bool  // in the current header block (since the last empty line)
}

var sniffNames = [2]string{"content-length", "transfer-encoding"}

// scan consumes p and reports whether a block with both fields was seen.
func (s *framingSniffer) scan(p []byte) bool {
	found := false
	for _, b := range p {
		switch {
		case b == '\n':
			if s.col == 0 {
				s.sawCL, s.sawTE = false, false // empty line: end of a block
			}
			s.col, s.cand = 0, 3
			continue
		case b == '\r' && s.col == 0:
			continue
		}
		if s.cand != 0 {
			lb := b | 0x20 // ASCII lower case; harmless for ':' and '-'
			for i, name := range sniffNames {
				bit := uint8(1) << i
				if s.cand&bit == 0 {
					continue
				}
				switch {
				case s.col < len(name) && lb == name[s.col]:
				case s.col == len(name) && b == ':':
					if i == 0 {
						s.sawCL = true
					} else {
						s.sawTE = true
					}
					s.cand &^= bit
				default:
					s.cand &^= bit
				}
			}
		}
		s.col++
		if s.sawCL && s.sawTE {
			found = true
		}
	}
	return found
}

// unwrapped: once hijacked for a tunnel nothing is sniffed.
func (c *sniffConn) unwrapped() (any, bool) { return c.Conn, c.off.Load() }
