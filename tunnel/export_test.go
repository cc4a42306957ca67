package tunnel

import "time"

// SetESPSeqSoftLimit lowers the sequence-number soft limit at which an
// outbound ESP SA is rekeyed, so tests reach it with a few packets.
func SetESPSeqSoftLimit(c *Config, n uint64) { c.espSeqSoftLimit = n }

// SetESPHoldTimeout shortens how long senders wait at an exhausted SA.
func SetESPHoldTimeout(c *Config, d time.Duration) { c.espHoldTimeout = d }

// RxParallel is how many ESP packets the crypto worker decrypted.
func (c *Client) RxParallel() uint64 { return c.data.RxParallel.Load() }
