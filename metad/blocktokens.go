package metad

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"go.uber.org/zap"

	"cairn"
	"cairn/blocktoken"
)

// Block access tokens (package blocktoken): metad keeps the signing keys
// in Pebble under "t" keys, so a restart neither invalidates the tokens
// it handed out nor leaves blockds holding keys it forgot; it signs a
// token into every answer that leads to a data-port operation, and hands
// blockds the keys with every heartbeat reply and registration.

// blockKeyKey is the Pebble key of block token key id.
func blockKeyKey(id uint32) []byte {
	return binary.BigEndian.AppendUint32([]byte{prefixBlockKey}, id)
}

// blockKeyLen is the length of a "t" key's value: secret, sign-from and
// expiry (Unix milliseconds, 8 bytes BE each).
const blockKeyLen = blocktoken.SecretLen + 16

func encodeBlockKey(k blocktoken.StoredKey) []byte {
	v := append([]byte(nil), k.Secret...)
	v = binary.BigEndian.AppendUint64(v, uint64(k.SignFrom.UnixMilli()))
	return binary.BigEndian.AppendUint64(v, uint64(k.Expiry.UnixMilli()))
}

func decodeBlockKey(k, v []byte) (blocktoken.StoredKey, error) {
	if len(k) != 5 || len(v) != blockKeyLen {
		return blocktoken.StoredKey{}, fmt.Errorf("block token key %x with a value of %d bytes", k, len(v))
	}
	s := blocktoken.SecretLen
	return blocktoken.StoredKey{
		BlockKey: cairn.BlockKey{
			ID:     binary.BigEndian.Uint32(k[1:]),
			Secret: append([]byte(nil), v[:s]...),
			Expiry: time.UnixMilli(int64(binary.BigEndian.Uint64(v[s+8:]))),
		},
		SignFrom: time.UnixMilli(int64(binary.BigEndian.Uint64(v[s:]))),
	}, nil
}

// keyStore is blocktoken.KeyStore on the namespace's Pebble; a metad
// group's leader writes the keys through the log (m set: raftkept.go),
// and its followers load what they applied (the manager is passive).
type keyStore struct {
	st *store
	m  *Metad
}

func (ks *keyStore) LoadKeys() ([]blocktoken.StoredKey, error) {
	it, err := ks.st.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixBlockKey}, UpperBound: []byte{prefixBlockKey + 1}})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var out []blocktoken.StoredKey
	for it.First(); it.Valid(); it.Next() {
		k, err := decodeBlockKey(it.Key(), it.Value())
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, it.Error()
}

func (ks *keyStore) SaveKey(k blocktoken.StoredKey) error {
	if ks.m != nil {
		return ks.m.keptMutate(func(b *pebble.Batch) error { return b.Set(blockKeyKey(k.ID), encodeBlockKey(k), nil) })
	}
	return ks.st.db.Set(blockKeyKey(k.ID), encodeBlockKey(k), pebble.Sync)
}

func (ks *keyStore) DeleteKey(id uint32) error {
	if ks.m != nil {
		return ks.m.keptMutate(func(b *pebble.Batch) error { return b.Delete(blockKeyKey(id), nil) })
	}
	return ks.st.db.Delete(blockKeyKey(id), pebble.Sync)
}

// tokenUser names the caller of ctx in the tokens it gets.
func tokenUser(ctx context.Context) string {
	if id, ok := cairn.IdentityFrom(ctx); ok {
		return id.User
	}
	return "metad"
}

// token signs a token for blk at stamps lo..hi allowing modes. A failure
// (the store cannot keep a new key) is logged and gives no token: the
// blockd refuses the operation, which says so.
func (m *Metad) token(user string, blk cairn.BlockID, lo, hi cairn.GenStamp, modes blocktoken.Mode) []byte {
	t, err := m.tokens.Issue(blk, lo, hi, modes, user)
	if err != nil {
		m.log.Error("cannot sign a block token", zap.Uint64("block", uint64(blk)), zap.Stringer("modes", modes), zap.Error(err))
		return nil
	}
	return t
}

// commandTokens gives each command that leads to data-port operations
// the tokens they need: CmdTransfer writes the copies on its targets,
// CmdRecover claims and finalizes replicas from the block's stamp to the
// recovery's.
func (m *Metad) commandTokens(cmds []cairn.Command) {
	for i := range cmds {
		c := &cmds[i]
		switch c.Kind {
		case cairn.CmdTransfer:
			c.Tokens = make([][]byte, len(c.Blocks))
			for j, b := range c.Blocks {
				c.Tokens[j] = m.token("metad", b.ID, b.GenStamp, b.GenStamp, blocktoken.Write)
			}
		case cairn.CmdRecover:
			c.Tokens = make([][]byte, len(c.Blocks))
			for j, b := range c.Blocks {
				c.Tokens[j] = m.token("metad", b.ID, b.GenStamp, max(b.GenStamp, c.RecoveryID), blocktoken.Recover)
			}
		}
	}
}

// keysCommand hands a blockd the keys (CmdKeys); none when they cannot
// be had (logged).
func (m *Metad) keysCommand() []cairn.Command {
	keys, err := m.tokens.Keys()
	if err != nil {
		m.log.Error("cannot hand out block token keys", zap.Error(err))
		return nil
	}
	return []cairn.Command{{Kind: cairn.CmdKeys, Keys: keys}}
}
