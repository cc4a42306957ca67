package tunnel

// SetESPSeqSoftLimit lowers the sequence-number soft limit at which an
// outbound ESP SA is rekeyed, so tests reach it with a few packets.
func SetESPSeqSoftLimit(c *Config, n uint64) { c.espSeqSoftLimit = n }

// RxParallel is how many ESP packets the crypto worker decrypted.
func (c *Client) RxParallel() uint64 { return c.data.RxParallel.Load() }
