//go:build amd64 && !purego

#include "textflag.h"

// AES-CBC with AES-NI. Round keys are loaded with MOVUPS: the key schedules
// and the messages need no alignment. Rounds for the three key sizes share
// their code: the last rounds always use the same registers (encryption) or
// the same offsets from the last round key (decryption), and the extra
// rounds of AES-192 and AES-256 come first, skipped by a jump on Nr.

// func encryptCBC(nr int, xk *byte, iv *[16]byte, dst, src *byte, n int)
//
// CBC encryption is a chain, C[i] = E(P[i] ^ C[i-1]): one block at a time.
// Round keys 1..Nr stay in X(16-Nr)..X15 for the whole message; round key 0
// comes from memory, since X1 holds each plaintext block.
TEXT ·encryptCBC(SB), NOSPLIT, $0-48
	MOVQ nr+0(FP), CX
	MOVQ xk+8(FP), AX
	MOVQ iv+16(FP), R8
	MOVQ dst+24(FP), DI
	MOVQ src+32(FP), SI
	MOVQ n+40(FP), DX

	// BX = xk + 16*(Nr-13), so that Xj's round key, j+Nr-15, is at
	// 16*(j-2)(BX): X2 at 0(BX) for AES-256, X6 at 64(BX) for AES-128.
	MOVQ CX, BX
	SHLQ $4, BX
	LEAQ -208(AX)(BX*1), BX
	CMPQ CX, $12
	JB   enckeys128
	JE   enckeys192
	MOVUPS 0(BX), X2
	MOVUPS 16(BX), X3

enckeys192:
	MOVUPS 32(BX), X4
	MOVUPS 48(BX), X5

enckeys128:
	MOVUPS 64(BX), X6
	MOVUPS 80(BX), X7
	MOVUPS 96(BX), X8
	MOVUPS 112(BX), X9
	MOVUPS 128(BX), X10
	MOVUPS 144(BX), X11
	MOVUPS 160(BX), X12
	MOVUPS 176(BX), X13
	MOVUPS 192(BX), X14
	MOVUPS 208(BX), X15
	MOVUPS 0(R8), X0 // C[-1] = IV

encloop:
	MOVUPS 0(SI), X1
	PXOR   X1, X0
	MOVUPS 0(AX), X1
	PXOR   X1, X0
	CMPQ   CX, $12
	JB     enc128
	JE     enc192
	AESENC X2, X0
	AESENC X3, X0

enc192:
	AESENC X4, X0
	AESENC X5, X0

enc128:
	AESENC     X6, X0
	AESENC     X7, X0
	AESENC     X8, X0
	AESENC     X9, X0
	AESENC     X10, X0
	AESENC     X11, X0
	AESENC     X12, X0
	AESENC     X13, X0
	AESENC     X14, X0
	AESENCLAST X15, X0
	MOVUPS     X0, 0(DI)
	ADDQ       $16, SI
	ADDQ       $16, DI
	SUBQ       $16, DX
	JNZ        encloop
	RET

// One AESDEC round with the round key at off(BX) for eight blocks, four
// blocks, one block.
#define DEC8(off) \
	MOVUPS off(BX), X8; \
	AESDEC X8, X0; \
	AESDEC X8, X1; \
	AESDEC X8, X2; \
	AESDEC X8, X3; \
	AESDEC X8, X4; \
	AESDEC X8, X5; \
	AESDEC X8, X6; \
	AESDEC X8, X7

#define DEC4(off) \
	MOVUPS off(BX), X8; \
	AESDEC X8, X0; \
	AESDEC X8, X1; \
	AESDEC X8, X2; \
	AESDEC X8, X3

#define DEC1(off) \
	MOVUPS off(BX), X8; \
	AESDEC X8, X0

// func decryptCBC(nr int, dk *byte, iv *[16]byte, dst, src *byte, n int)
//
// CBC decryption has no chain through the cipher, P[i] = D(C[i]) ^ C[i-1]:
// eight blocks go through each round together, so the AES unit works on
// the next block while one block's round is in flight. All of a group's
// ciphertext is read before any of its plaintext is written, and the last
// ciphertext block is kept (X9) for the next group: dst may be src.
// X10 and X11 hold the first and last round keys.
TEXT ·decryptCBC(SB), NOSPLIT, $0-48
	MOVQ nr+0(FP), CX
	MOVQ dk+8(FP), AX
	MOVQ iv+16(FP), R8
	MOVQ dst+24(FP), DI
	MOVQ src+32(FP), SI
	MOVQ n+40(FP), DX

	// BX = dk + 16*Nr, the last round key; round r is at -16*(Nr-r)(BX).
	MOVQ   CX, BX
	SHLQ   $4, BX
	ADDQ   AX, BX
	MOVUPS 0(R8), X9 // C[-1] = IV
	MOVUPS 0(AX), X10
	MOVUPS 0(BX), X11

dec8loop:
	CMPQ   DX, $128
	JB     dec4
	MOVUPS 0(SI), X0
	MOVUPS 16(SI), X1
	MOVUPS 32(SI), X2
	MOVUPS 48(SI), X3
	MOVUPS 64(SI), X4
	MOVUPS 80(SI), X5
	MOVUPS 96(SI), X6
	MOVUPS 112(SI), X7
	PXOR   X10, X0
	PXOR   X10, X1
	PXOR   X10, X2
	PXOR   X10, X3
	PXOR   X10, X4
	PXOR   X10, X5
	PXOR   X10, X6
	PXOR   X10, X7
	CMPQ   CX, $12
	JB     dec8r128
	JE     dec8r192
	DEC8(-208)
	DEC8(-192)

dec8r192:
	DEC8(-176)
	DEC8(-160)

dec8r128:
	DEC8(-144)
	DEC8(-128)
	DEC8(-112)
	DEC8(-96)
	DEC8(-80)
	DEC8(-64)
	DEC8(-48)
	DEC8(-32)
	DEC8(-16)
	AESDECLAST X11, X0
	AESDECLAST X11, X1
	AESDECLAST X11, X2
	AESDECLAST X11, X3
	AESDECLAST X11, X4
	AESDECLAST X11, X5
	AESDECLAST X11, X6
	AESDECLAST X11, X7
	PXOR       X9, X0
	MOVUPS     0(SI), X8
	PXOR       X8, X1
	MOVUPS     16(SI), X8
	PXOR       X8, X2
	MOVUPS     32(SI), X8
	PXOR       X8, X3
	MOVUPS     48(SI), X8
	PXOR       X8, X4
	MOVUPS     64(SI), X8
	PXOR       X8, X5
	MOVUPS     80(SI), X8
	PXOR       X8, X6
	MOVUPS     96(SI), X8
	PXOR       X8, X7
	MOVUPS     112(SI), X9
	MOVUPS     X0, 0(DI)
	MOVUPS     X1, 16(DI)
	MOVUPS     X2, 32(DI)
	MOVUPS     X3, 48(DI)
	MOVUPS     X4, 64(DI)
	MOVUPS     X5, 80(DI)
	MOVUPS     X6, 96(DI)
	MOVUPS     X7, 112(DI)
	ADDQ       $128, SI
	ADDQ       $128, DI
	SUBQ       $128, DX
	JMP        dec8loop

// Four to seven blocks left: four of them together.
dec4:
	CMPQ   DX, $64
	JB     dec1loop
	MOVUPS 0(SI), X0
	MOVUPS 16(SI), X1
	MOVUPS 32(SI), X2
	MOVUPS 48(SI), X3
	PXOR   X10, X0
	PXOR   X10, X1
	PXOR   X10, X2
	PXOR   X10, X3
	CMPQ   CX, $12
	JB     dec4r128
	JE     dec4r192
	DEC4(-208)
	DEC4(-192)

dec4r192:
	DEC4(-176)
	DEC4(-160)

dec4r128:
	DEC4(-144)
	DEC4(-128)
	DEC4(-112)
	DEC4(-96)
	DEC4(-80)
	DEC4(-64)
	DEC4(-48)
	DEC4(-32)
	DEC4(-16)
	AESDECLAST X11, X0
	AESDECLAST X11, X1
	AESDECLAST X11, X2
	AESDECLAST X11, X3
	PXOR       X9, X0
	MOVUPS     0(SI), X8
	PXOR       X8, X1
	MOVUPS     16(SI), X8
	PXOR       X8, X2
	MOVUPS     32(SI), X8
	PXOR       X8, X3
	MOVUPS     48(SI), X9
	MOVUPS     X0, 0(DI)
	MOVUPS     X1, 16(DI)
	MOVUPS     X2, 32(DI)
	MOVUPS     X3, 48(DI)
	ADDQ       $64, SI
	ADDQ       $64, DI
	SUBQ       $64, DX

// At most three blocks left, one at a time.
dec1loop:
	TESTQ  DX, DX
	JZ     done
	MOVUPS 0(SI), X12
	MOVO   X12, X0
	PXOR   X10, X0
	CMPQ   CX, $12
	JB     dec1r128
	JE     dec1r192
	DEC1(-208)
	DEC1(-192)

dec1r192:
	DEC1(-176)
	DEC1(-160)

dec1r128:
	DEC1(-144)
	DEC1(-128)
	DEC1(-112)
	DEC1(-96)
	DEC1(-80)
	DEC1(-64)
	DEC1(-48)
	DEC1(-32)
	DEC1(-16)
	AESDECLAST X11, X0
	PXOR       X9, X0
	MOVO       X12, X9
	MOVUPS     X0, 0(DI)
	ADDQ       $16, SI
	ADDQ       $16, DI
	SUBQ       $16, DX
	JMP        dec1loop

done:
	RET

// One AESENC round with the round key at off(AX) for the four lanes.
#define ENC4(off) \
	MOVUPS off(AX), X4; \
	AESENC X4, X0; \
	AESENC X4, X1; \
	AESENC X4, X2; \
	AESENC X4, X3

// func encryptCBC4(nr int, xk *byte, ivs, bufs *[4]*byte, n int)
//
// Four independent messages of n bytes each, encrypted in place: every
// message is a chain, but the four chains go through the AES unit side by
// side. X0-X3 hold the lanes' chaining values, X4 the round key, X5 the
// plaintext block.
TEXT ·encryptCBC4(SB), NOSPLIT, $0-40
	MOVQ nr+0(FP), CX
	MOVQ xk+8(FP), AX
	MOVQ ivs+16(FP), R8
	MOVQ bufs+24(FP), R9
	MOVQ n+32(FP), DX
	MOVQ 0(R8), R10
	MOVUPS 0(R10), X0
	MOVQ 8(R8), R10
	MOVUPS 0(R10), X1
	MOVQ 16(R8), R10
	MOVUPS 0(R10), X2
	MOVQ 24(R8), R10
	MOVUPS 0(R10), X3
	MOVQ 0(R9), SI
	MOVQ 8(R9), DI
	MOVQ 16(R9), R12
	MOVQ 24(R9), R13

	// BX = xk + 16*Nr, the last round key, as in decryptCBC; AX =
	// BX - 224, so that round r is at 16*(r+14-Nr)(AX): the rounds all key
	// sizes share are at the same offsets. R11 = round key 0.
	MOVQ CX, BX
	SHLQ $4, BX
	ADDQ AX, BX
	MOVQ AX, R11 // round key 0
	LEAQ -224(BX), AX

enc4loop:
	MOVUPS 0(R11), X4
	MOVUPS 0(SI), X5
	PXOR   X5, X0
	PXOR   X4, X0
	MOVUPS 0(DI), X5
	PXOR   X5, X1
	PXOR   X4, X1
	MOVUPS 0(R12), X5
	PXOR   X5, X2
	PXOR   X4, X2
	MOVUPS 0(R13), X5
	PXOR   X5, X3
	PXOR   X4, X3
	CMPQ   CX, $12
	JB     enc4r128
	JE     enc4r192
	ENC4(16)
	ENC4(32)

enc4r192:
	ENC4(48)
	ENC4(64)

enc4r128:
	ENC4(80)
	ENC4(96)
	ENC4(112)
	ENC4(128)
	ENC4(144)
	ENC4(160)
	ENC4(176)
	ENC4(192)
	ENC4(208)
	MOVUPS     0(BX), X4
	AESENCLAST X4, X0
	AESENCLAST X4, X1
	AESENCLAST X4, X2
	AESENCLAST X4, X3
	MOVUPS     X0, 0(SI)
	MOVUPS     X1, 0(DI)
	MOVUPS     X2, 0(R12)
	MOVUPS     X3, 0(R13)
	ADDQ       $16, SI
	ADDQ       $16, DI
	ADDQ       $16, R12
	ADDQ       $16, R13
	SUBQ       $16, DX
	JNZ        enc4loop
	RET
