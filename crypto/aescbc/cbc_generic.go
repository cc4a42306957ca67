//go:build !amd64 || purego

package aescbc

// useAsm is a variable, as on amd64, so that the tests can compare paths.
var useAsm = false

func encryptCBC(nr int, xk *byte, iv *[BlockSize]byte, dst, src *byte, n int) {}

func decryptCBC(nr int, dk *byte, iv *[BlockSize]byte, dst, src *byte, n int) {}

func encryptCBC4(nr int, xk *byte, ivs, bufs *[4]*byte, n int) {}
