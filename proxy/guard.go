package proxy

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"
)

// Credentials are the user name and password proxy clients must give
// (SOCKS5: RFC 1929; HTTP: Proxy-Authorization Basic, RFC 9110 §11.7.1 and
// RFC 7617). Only SHA-256 digests are kept, and they are compared in
// constant time, so neither the values nor their lengths leak through
// timing.
type Credentials struct {
	user, pass [sha256.Size]byte
}

// NewCredentials returns credentials for user and password.
func NewCredentials(user string, password []byte) *Credentials {
	return &Credentials{user: sha256.Sum256([]byte(user)), pass: sha256.Sum256(password)}
}

// Valid reports whether user and password match, in constant time.
func (c *Credentials) Valid(user, password string) bool {
	u := sha256.Sum256([]byte(user))
	p := sha256.Sum256([]byte(password))
	return subtle.ConstantTimeCompare(u[:], c.user[:])&subtle.ConstantTimeCompare(p[:], c.pass[:]) == 1
}

// ValidBasic reports whether an HTTP Basic authorization header value
// ("Basic base64(user:password)", RFC 7617) carries these credentials.
func (c *Credentials) ValidBasic(header string) bool {
	scheme, cred, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Basic") {
		return false
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred))
	if err != nil {
		return false
	}
	user, pass, ok := strings.Cut(string(raw), ":")
	return ok && c.Valid(user, pass)
}

// Limiter caps the number of client connections open at once, across the
// proxies that share it.
type Limiter struct{ slots chan struct{} }

// NewLimiter returns a Limiter for n connections (n <= 0: no limit, nil).
func NewLimiter(n int) *Limiter {
	if n <= 0 {
		return nil
	}
	return &Limiter{slots: make(chan struct{}, n)}
}

func (l *Limiter) tryAcquire() bool {
	if l == nil {
		return true
	}
	select {
	case l.slots <- struct{}{}:
		return true
	default:
		return false
	}
}

func (l *Limiter) release() {
	if l != nil {
		<-l.slots
	}
}

// Accept back-off after a failure such as EMFILE or ENFILE, as net/http
// does: 5 ms doubling to 1 s, reset by the next success.
const (
	acceptBackoffMin = 5 * time.Millisecond
	acceptBackoffMax = time.Second
)

// guardedListener never lets a failing Accept end the server (it backs off
// and retries until the listener is closed) and refuses connections beyond
// the Limiter with refusal, a short message in the proxy's protocol.
type guardedListener struct {
	net.Listener
	lim     *Limiter
	stats   *Stats
	refusal []byte
	logger  *slog.Logger

	closeOnce sync.Once
	done      chan struct{}
	refusing  chan struct{} // refusals in progress
	lastWarn  time.Time     // refusals logged at most once a second
}

func newGuardedListener(ln net.Listener, lim *Limiter, stats *Stats, refusal []byte, logger *slog.Logger) *guardedListener {
	return &guardedListener{Listener: ln, lim: lim, stats: stats, refusal: refusal, logger: logger,
		done: make(chan struct{}), refusing: make(chan struct{}, maxRefusing)}
}

// Refusals: at most maxRefusing at once, each within refuseTimeout.
const (
	maxRefusing   = 64
	refuseTimeout = time.Second
)

// refuse waits for the client's first bytes (a refusal sent before the
// request reads as an unsolicited response to some clients), answers with
// the refusal, half-closes and drains what the client still sends, so the
// close does not reset the connection before the refusal is read.
func (l *guardedListener) refuse(c net.Conn) {
	defer func() { <-l.refusing }()
	defer c.Close()
	c.SetDeadline(time.Now().Add(refuseTimeout))
	buf := make([]byte, 512)
	if _, err := c.Read(buf); err != nil {
		return
	}
	if _, err := c.Write(l.refusal); err != nil {
		return
	}
	if cw, ok := c.(closeWriter); ok {
		cw.CloseWrite()
	}
	for {
		if _, err := c.Read(buf); err != nil {
			return
		}
	}
}

func (l *guardedListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

func (l *guardedListener) Accept() (net.Conn, error) {
	var delay time.Duration
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			select {
			case <-l.done:
				return nil, net.ErrClosed
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return nil, err
			}
			if delay == 0 {
				delay = acceptBackoffMin
				l.logger.Warn("accept failed, backing off and retrying", "err", err.Error())
			} else {
				delay = min(2*delay, acceptBackoffMax)
			}
			t := time.NewTimer(delay)
			select {
			case <-l.done:
				t.Stop()
				return nil, net.ErrClosed
			case <-t.C:
			}
			continue
		}
		if delay != 0 {
			l.logger.Info("accepting connections again")
			delay = 0
		}
		if !l.lim.tryAcquire() {
			l.stats.refuse(RefusedLimit)
			if now := time.Now(); now.Sub(l.lastWarn) >= time.Second {
				l.lastWarn = now
				l.logger.Warn("too many client connections, refusing new ones (see --max-connections)", "client", c.RemoteAddr().String())
			}
			select {
			case l.refusing <- struct{}{}:
				go l.refuse(c)
			default:
				c.Close() // refusing too many already: no explanation
			}
			continue
		}
		connMemory.opened()
		l.stats.accept()
		return &limitedConn{Conn: c, lim: l.lim, stats: l.stats}, nil
	}
}

// limitedConn gives its Limiter slot back when closed (and tells
// connMemory).
type limitedConn struct {
	net.Conn
	lim   *Limiter
	stats *Stats
	once  sync.Once
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.lim.release()
		connMemory.closed()
		c.stats.close()
	})
	return err
}

// CloseWrite half-closes, if the underlying connection can.
func (c *limitedConn) CloseWrite() error {
	if cw, ok := c.Conn.(closeWriter); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

func (c *limitedConn) unwrapped() (any, bool) { return c.Conn, true }
