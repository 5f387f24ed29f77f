package blocktoken

import (
	"crypto/hmac"
	"fmt"
	"sync"
	"time"

	"cairn"
)

// KeySet is a blockd's copy of metad's keys, which it checks tokens with
// (HDFS's BlockTokenSecretManager in its worker mode). Each member of a
// metad group makes its own keys (their IDs may coincide), and a token
// signed by one must hold at the blockd after another leads: the set keeps
// each source's keys apart (UpdateFrom) and a token is good if a key of
// its ID from any source signed it. It is safe for concurrent use.
type KeySet struct {
	mu   sync.RWMutex
	keys map[string]map[uint32]cairn.BlockKey // source -> ID -> key
	set  bool                                 // keys have come from metad at least once
}

// Update replaces the keys with those metad sent (a single metad).
func (ks *KeySet) Update(keys []cairn.BlockKey) { ks.UpdateFrom("", keys) }

// UpdateFrom replaces the keys source (a member of a metad group) sent,
// leaving other sources' keys as they are.
func (ks *KeySet) UpdateFrom(source string, keys []cairn.BlockKey) {
	m := make(map[uint32]cairn.BlockKey, len(keys))
	for _, k := range keys {
		m[k.ID] = k
	}
	ks.mu.Lock()
	if ks.keys == nil {
		ks.keys = map[string]map[uint32]cairn.BlockKey{}
	}
	ks.keys[source], ks.set = m, true
	ks.mu.Unlock()
}

// Ready reports whether keys have come from metad.
func (ks *KeySet) Ready() bool {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	return ks.set
}

// verify reports whether a key of id held signs body with sum, and
// whether any key of id is held at all.
func (ks *KeySet) verify(id uint32, body, sum []byte) (ok, held bool) {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	for _, src := range ks.keys {
		k, has := src[id]
		if !has {
			continue
		}
		held = true
		if hmac.Equal(sum, mac(k.Secret, body)) {
			return true, true
		}
	}
	return false, held
}

// Want is what an operation needs of its token: the block, every
// generation stamp the operation names, and the mode.
type Want struct {
	Block  cairn.BlockID
	Stamps []cairn.GenStamp
	Mode   Mode
}

// Check verifies raw for an operation that needs want, at now. It
// returns the token, or an error of KindAccess saying why it is refused
// (missing, malformed, forged, signed with a key this blockd does not
// hold, expired, for another block, stamp or mode), or of KindRetry while
// no keys have come from metad yet.
func (ks *KeySet) Check(raw []byte, now time.Time, want Want) (Token, error) {
	const op = "blocktoken.Check"
	refuse := func(why string) error { return cairn.E(op, cairn.KindAccess, "", "block token refused: "+why) }
	ks.mu.RLock()
	set := ks.set
	ks.mu.RUnlock()
	if !set {
		return Token{}, cairn.E(op, cairn.KindRetry, "", "this blockd has no block token keys from metad yet")
	}
	if len(raw) == 0 {
		return Token{}, refuse(fmt.Sprintf("no token for %v of blk_%d", want.Mode, want.Block))
	}
	t, body, sum, err := parse(raw)
	if err != nil {
		return Token{}, err
	}
	good, held := ks.verify(t.KeyID, body, sum)
	if !held {
		return t, refuse(fmt.Sprintf("signed with key %d, which this blockd does not hold", t.KeyID))
	}
	if !good {
		return t, refuse(fmt.Sprintf("its signature does not match (key %d)", t.KeyID))
	}
	if !now.Before(t.Expiry) {
		return t, refuse(fmt.Sprintf("expired at %s", t.Expiry.UTC().Format(time.RFC3339Nano)))
	}
	if t.Block != want.Block {
		return t, refuse(fmt.Sprintf("it is for blk_%d, not blk_%d", t.Block, want.Block))
	}
	for _, s := range want.Stamps {
		if s < t.MinStamp || s > t.MaxStamp {
			return t, refuse(fmt.Sprintf("generation stamp %d is outside its %d..%d", s, t.MinStamp, t.MaxStamp))
		}
	}
	if t.Modes&want.Mode != want.Mode {
		return t, refuse(fmt.Sprintf("it allows %v, not %v", t.Modes, want.Mode))
	}
	return t, nil
}
