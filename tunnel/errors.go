package tunnel

import (
	"errors"
	"fmt"
)

// Failure classes of a connection attempt. Every error Dial returns wraps
// exactly one of them, so callers (and the CLI's one-line report) can tell
// what went wrong without parsing text; the layer's own sentinel error
// (ike.ErrAuthFailed, ppp.ErrAuthFailed, ...) stays reachable with errors.Is.
var (
	ErrConfig            = errors.New("bad configuration")
	ErrServerUnreachable = errors.New("server unreachable")
	ErrIKE               = errors.New("IKE failed")
	ErrL2TP              = errors.New("L2TP failed")
	ErrPPP               = errors.New("PPP failed")
	ErrNetstack          = errors.New("network stack failed")
	ErrClosed            = errors.New("tunnel closed")
)

// Error is a failure of one layer, with a hint for the user on what to check.
// Its text never contains the PSK or the password.
type Error struct {
	Class error  // one of the Err* classes above
	Layer string // "IKE", "L2TP", "PPP", ...
	Err   error  // the layer's error
	Hint  string // what to check, may be empty
}

func (e *Error) Error() string {
	s := fmt.Sprintf("%s: %v", e.Layer, e.Err)
	if e.Hint != "" {
		s += " (" + e.Hint + ")"
	}
	return s
}

// Unwrap exposes both the class and the layer's error to errors.Is/As.
func (e *Error) Unwrap() []error { return []error{e.Class, e.Err} }
