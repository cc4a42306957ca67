//go:build !race

package ppp

const raceEnabled = false
