package netstack

import (
	"fmt"
	"sync/atomic"
)

// Pipe returns two Stacks wired back to back in this process: every packet
// a emits is injected into b and vice versa (like wireguard-go's
// tun/tuntest ChannelTUN pair). It is a test helper for code above the
// stack (proxies, the tunnel client's far side); no root or network needed.
// The returned stacks honour a.Headroom/a.Tailroom etc. like real ones.
func Pipe(a, b Config) (*Stack, *Stack, error) {
	var sa, sb atomic.Pointer[Stack]
	forward := func(dst *atomic.Pointer[Stack]) func([]byte, int) error {
		return func(buf []byte, headroom int) error {
			peer := dst.Load()
			if peer == nil {
				return fmt.Errorf("%w: pipe peer not ready", ErrClosed)
			}
			return peer.InjectInbound(buf[headroom:])
		}
	}
	stackA, err := New(a, forward(&sb))
	if err != nil {
		return nil, nil, err
	}
	stackB, err := New(b, forward(&sa))
	if err != nil {
		stackA.Close()
		return nil, nil, err
	}
	sa.Store(stackA)
	sb.Store(stackB)
	return stackA, stackB, nil
}
