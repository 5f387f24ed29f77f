package blockd

import (
	"bytes"
	"testing"
	"time"

	"cairn"
	"cairn/blocktoken"
)

// testKey stands in for metad's block token key in blockd's own tests.
var testKey = cairn.BlockKey{ID: 7, Secret: bytes.Repeat([]byte{0x5a}, blocktoken.SecretLen), Expiry: time.Now().Add(24 * time.Hour)}

// testToken is a token signed with testKey for b at stamps lo..hi.
func testToken(t testing.TB, b cairn.BlockID, lo, hi cairn.GenStamp, m blocktoken.Mode) []byte {
	t.Helper()
	tok, err := blocktoken.Sign(blocktoken.Token{KeyID: testKey.ID, Expiry: time.Now().Add(time.Hour), Block: b, MinStamp: lo, MaxStamp: hi, Modes: m, User: "test"}, testKey.Secret)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
