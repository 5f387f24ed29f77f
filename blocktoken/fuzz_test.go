package blocktoken

import (
	"bytes"
	"testing"
	"time"

	"cairn"
)

// FuzzParse: whatever arrives as a token, Parse and Check never panic,
// Check accepts nothing not signed with a key held, and a token that
// parses encodes back to the same bytes (one encoding per token).
func FuzzParse(f *testing.F) {
	tok := Token{KeyID: 1, Expiry: time.Unix(1_900_000_600, 0), Block: 42, MinStamp: 1, MaxStamp: 9, Modes: Read | Recover, User: "alice"}
	good, _ := Sign(tok, key1.Secret)
	f.Add(good)
	f.Add([]byte{})
	f.Add([]byte{1})
	f.Add(good[:len(good)-1])
	var ks KeySet
	ks.Update([]cairn.BlockKey{key1})
	f.Fuzz(func(t *testing.T, raw []byte) {
		p, err := Parse(raw)
		if err != nil {
			return
		}
		body := p.body(nil)
		if !bytes.Equal(body, raw[:len(body)]) {
			t.Fatalf("%x parses to %v, which encodes to %x", raw, p, body)
		}
		got, err := ks.Check(raw, time.Unix(1_900_000_000, 0), Want{Block: p.Block, Stamps: []cairn.GenStamp{p.MinStamp}, Mode: p.Modes})
		if err == nil {
			resigned, _ := Sign(got, key1.Secret)
			if !bytes.Equal(resigned, raw) {
				t.Fatalf("accepted %x, which key 1 does not sign so", raw)
			}
		}
	})
}
