//go:build amd64 && !purego

package aescbc

import "golang.org/x/sys/cpu"

// useAsm is false on an amd64 without AES-NI (and in tests of the generic
// path). SSE2, the rest of what the assembly uses, is in every amd64.
var useAsm = cpu.X86.HasAES

// encryptCBC encrypts n bytes (whole blocks, n > 0) from src to dst; xk holds
// the 16*(nr+1) bytes of the cipher's round keys.
//
//go:noescape
func encryptCBC(nr int, xk *byte, iv *[BlockSize]byte, dst, src *byte, n int)

// decryptCBC decrypts n bytes (whole blocks, n > 0) from src to dst; dk holds
// the round keys of the equivalent inverse cipher.
//
//go:noescape
func decryptCBC(nr int, dk *byte, iv *[BlockSize]byte, dst, src *byte, n int)

// encryptCBC4 encrypts four messages of n bytes each (whole blocks, n > 0)
// in place, each under its own IV.
//
//go:noescape
func encryptCBC4(nr int, xk *byte, ivs, bufs *[4]*byte, n int)
