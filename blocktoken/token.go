// Package blocktoken is cairn's block access tokens, as HDFS's
// BlockTokenIdentifier and BlockTokenSecretManager: metad signs a token
// (HMAC-SHA256 with a key only metad and the blockds hold) naming a block,
// the range of generation stamps it may be used at, the operations it
// allows (Mode), the user it was issued to and when it expires; a blockd
// checks the token of every operation on its data port before it does
// anything (KeySet.Check).
//
// Keys are made, persisted and rotated by metad (Manager); blockds get the
// keys that may still sign or verify a token with every heartbeat reply
// and their registration reply.
//
// Encoding (version 1), all integers big-endian; the MAC covers every byte
// before it:
//
//	u8  version (1)
//	u32 key ID
//	i64 expiry, Unix milliseconds
//	u64 block ID
//	u64 lowest generation stamp the token is good for
//	u64 highest generation stamp the token is good for
//	u8  modes (Mode bits)
//	u8  user length, then the user (at most MaxUser bytes)
//	32  HMAC-SHA256 of the above with the key's secret
package blocktoken

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"strings"
	"time"

	"cairn"
)

// Mode is a set of operations a token allows (HDFS's AccessMode).
type Mode uint8

const (
	// Read: READ_BLOCK and VERIFY_BLOCK.
	Read Mode = 1 << iota
	// Write: WRITE_BLOCK in stages CREATE, APPEND and RECOVERY (the
	// writer's pipeline and its recovery).
	Write
	// Copy: TRANSFER_BLOCK, a blockd asked to copy its replica to another.
	Copy
	// Replace: WRITE_BLOCK in stage COPY, a replica brought up to date by
	// a copy, which may replace an older one.
	Replace
	// Recover: INIT_RECOVERY and UPDATE_RECOVERY of a block recovery.
	Recover

	allModes = Read | Write | Copy | Replace | Recover
)

func (m Mode) String() string {
	if m == 0 {
		return "none"
	}
	var parts []string
	for _, x := range []struct {
		m    Mode
		name string
	}{{Read, "read"}, {Write, "write"}, {Copy, "copy"}, {Replace, "replace"}, {Recover, "recover"}} {
		if m&x.m != 0 {
			parts = append(parts, x.name)
		}
	}
	if m&^allModes != 0 {
		parts = append(parts, fmt.Sprintf("%#x", uint8(m&^allModes)))
	}
	return strings.Join(parts, "|")
}

// Version is the version byte of the encoding this package writes.
const Version = 1

// Sizes of the encoding.
const (
	MaxUser  = 255
	macLen   = sha256.Size
	fixedLen = 1 + 4 + 8 + 8 + 8 + 8 + 1 + 1
	// MaxLen is the longest valid token.
	MaxLen = fixedLen + MaxUser + macLen
)

// Token is what a block access token says. MinStamp..MaxStamp are the
// generation stamps an operation may name (equal for most tokens; a range
// where the stamp changes within one grant: a pipeline recovery takes
// the survivors' replicas from the old stamp to the new one, a block
// recovery from metad's stamp to the recovery's).
type Token struct {
	KeyID    uint32
	Expiry   time.Time
	Block    cairn.BlockID
	MinStamp cairn.GenStamp
	MaxStamp cairn.GenStamp
	Modes    Mode
	User     string
}

func (t Token) String() string {
	return fmt.Sprintf("token{key %d, blk_%d stamps %d..%d, %v, user %q, expires %s}",
		t.KeyID, t.Block, t.MinStamp, t.MaxStamp, t.Modes, t.User, t.Expiry.UTC().Format(time.RFC3339))
}

// body appends the signed part of t's encoding.
func (t Token) body(dst []byte) []byte {
	dst = append(dst, Version)
	dst = binary.BigEndian.AppendUint32(dst, t.KeyID)
	dst = binary.BigEndian.AppendUint64(dst, uint64(t.Expiry.UnixMilli()))
	dst = binary.BigEndian.AppendUint64(dst, uint64(t.Block))
	dst = binary.BigEndian.AppendUint64(dst, uint64(t.MinStamp))
	dst = binary.BigEndian.AppendUint64(dst, uint64(t.MaxStamp))
	dst = append(dst, byte(t.Modes))
	dst = append(dst, byte(len(t.User)))
	return append(dst, t.User...)
}

// Sign encodes t and signs it with secret.
func Sign(t Token, secret []byte) ([]byte, error) {
	if len(t.User) > MaxUser {
		return nil, cairn.E("blocktoken.Sign", cairn.KindInvalid, "", fmt.Sprintf("user name of %d bytes, longer than %d", len(t.User), MaxUser))
	}
	if t.Modes == 0 || t.Modes&^allModes != 0 || t.MinStamp > t.MaxStamp {
		return nil, cairn.E("blocktoken.Sign", cairn.KindInvalid, "", "a token with no modes, unknown modes or stamps out of order: "+t.String())
	}
	b := t.body(make([]byte, 0, MaxLen))
	return append(b, mac(secret, b)...), nil
}

func mac(secret, body []byte) []byte {
	h := hmac.New(sha256.New, secret)
	h.Write(body)
	return h.Sum(nil)
}

// Parse decodes raw without checking its MAC: what a token claims, for a
// client deciding whether to ask for a fresh one. It refuses anything
// that is not a well-formed token of this version.
func Parse(raw []byte) (Token, error) {
	t, _, _, err := parse(raw)
	return t, err
}

// parse decodes raw and returns the token, its signed part and its MAC.
func parse(raw []byte) (Token, []byte, []byte, error) {
	bad := func(why string) (Token, []byte, []byte, error) {
		return Token{}, nil, nil, cairn.E("blocktoken.Parse", cairn.KindAccess, "", "malformed block token: "+why)
	}
	if len(raw) == 0 {
		return bad("empty")
	}
	if len(raw) > MaxLen {
		return bad(fmt.Sprintf("%d bytes, more than %d", len(raw), MaxLen))
	}
	if raw[0] != Version {
		return bad(fmt.Sprintf("version %d, this side reads %d", raw[0], Version))
	}
	if len(raw) < fixedLen+macLen {
		return bad(fmt.Sprintf("%d bytes, fewer than %d", len(raw), fixedLen+macLen))
	}
	ulen := int(raw[fixedLen-1])
	if len(raw) != fixedLen+ulen+macLen {
		return bad(fmt.Sprintf("%d bytes for a user of %d", len(raw), ulen))
	}
	t := Token{
		KeyID:    binary.BigEndian.Uint32(raw[1:]),
		Expiry:   time.UnixMilli(int64(binary.BigEndian.Uint64(raw[5:]))),
		Block:    cairn.BlockID(binary.BigEndian.Uint64(raw[13:])),
		MinStamp: cairn.GenStamp(binary.BigEndian.Uint64(raw[21:])),
		MaxStamp: cairn.GenStamp(binary.BigEndian.Uint64(raw[29:])),
		Modes:    Mode(raw[37]),
		User:     string(raw[fixedLen : fixedLen+ulen]),
	}
	if t.Modes == 0 || t.Modes&^allModes != 0 {
		return bad(fmt.Sprintf("modes %#x", uint8(t.Modes)))
	}
	if t.MinStamp > t.MaxStamp {
		return bad(fmt.Sprintf("stamps %d..%d out of order", t.MinStamp, t.MaxStamp))
	}
	n := fixedLen + ulen
	return t, raw[:n], raw[n:], nil
}

// Expired reports whether raw names an expiry before now (or is not a
// token at all): the client's test for asking metad for a fresh one. It
// does not check the MAC.
func Expired(raw []byte, now time.Time) bool {
	t, err := Parse(raw)
	return err != nil || !now.Before(t.Expiry)
}
