//go:build race

package l2tp

// raceEnabled: the race detector instruments memory accesses and allocates
// on its own, so allocation counts mean nothing under it.
const raceEnabled = true
