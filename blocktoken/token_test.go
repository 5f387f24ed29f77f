package blocktoken

import (
	"bytes"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"cairn"
)

var (
	key1 = cairn.BlockKey{ID: 1, Secret: bytes.Repeat([]byte{1}, SecretLen), Expiry: time.Unix(2_000_000_000, 0)}
	key2 = cairn.BlockKey{ID: 2, Secret: bytes.Repeat([]byte{2}, SecretLen), Expiry: time.Unix(2_000_000_000, 0)}
	now  = time.Unix(1_900_000_000, 0)
)

func sign(t *testing.T, tok Token, k cairn.BlockKey) []byte {
	t.Helper()
	tok.KeyID = k.ID
	raw, err := Sign(tok, k.Secret)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func readToken() Token {
	return Token{Expiry: now.Add(10 * time.Minute), Block: 42, MinStamp: 1001, MaxStamp: 1001, Modes: Read, User: "alice"}
}

func TestRoundTrip(t *testing.T) {
	tok := readToken()
	tok.KeyID = 1
	raw := sign(t, tok, key1)
	got, err := Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	if got.Expiry.UnixMilli() != tok.Expiry.UnixMilli() || got.KeyID != 1 || got.Block != 42 || got.MinStamp != 1001 ||
		got.MaxStamp != 1001 || got.Modes != Read || got.User != "alice" {
		t.Fatalf("parsed %v, want %v", got, tok)
	}
}

// TestGolden pins the encoding (docs/FORMAT.md): a change to it must be a
// new version.
func TestGolden(t *testing.T) {
	tok := Token{KeyID: 3, Expiry: time.UnixMilli(0x0102030405), Block: 0x0a0b, MinStamp: 5, MaxStamp: 6, Modes: Read | Write, User: "u"}
	raw, err := Sign(tok, bytes.Repeat([]byte{9}, SecretLen))
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{1, 0, 0, 0, 3, 0, 0, 0, 1, 2, 3, 4, 5, 0, 0, 0, 0, 0, 0, 0x0a, 0x0b, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 6, 3, 1, 'u'}
	if !bytes.Equal(raw[:len(want)], want) || len(raw) != len(want)+32 {
		t.Fatalf("encoding\n%x\nwant body\n%x and a 32-byte MAC", raw, want)
	}
}

// TestCheckRefuses: every way a token can be wrong for an op is refused
// with KindAccess, and the right one passes.
func TestCheckRefuses(t *testing.T) {
	var ks KeySet
	ks.Update([]cairn.BlockKey{key1})
	want := Want{Block: 42, Stamps: []cairn.GenStamp{1001}, Mode: Read}
	good := sign(t, readToken(), key1)
	if _, err := ks.Check(good, now, want); err != nil {
		t.Fatalf("a good token: %v", err)
	}
	forged := slices.Clone(good)
	forged[len(forged)-1] ^= 1
	widened := slices.Clone(good)
	widened[37] = byte(Read | Write) // modes, MAC left as it was
	other := readToken()
	other.Block = 43
	stamp := readToken()
	stamp.MinStamp, stamp.MaxStamp = 1002, 1002
	expired := readToken()
	expired.Expiry = now
	write := readToken()
	write.Modes = Write
	for name, raw := range map[string][]byte{
		"missing":             nil,
		"garbage":             []byte("not a token at all"),
		"forged MAC":          forged,
		"modes widened":       widened,
		"another block":       sign(t, other, key1),
		"another stamp":       sign(t, stamp, key1),
		"expired":             sign(t, expired, key1),
		"another mode":        sign(t, write, key1),
		"unknown key":         sign(t, readToken(), key2),
		"key 1 id, key 2 MAC": func() []byte { tk := readToken(); tk.KeyID = 1; b, _ := Sign(tk, key2.Secret); return b }(),
	} {
		if _, err := ks.Check(raw, now, want); cairn.KindOf(err) != cairn.KindAccess {
			t.Errorf("%s: %v, want KindAccess", name, err)
		}
	}
	// A range covers every stamp an op names, and only those.
	rng := readToken()
	rng.MinStamp, rng.MaxStamp, rng.Modes = 1001, 1005, Copy
	raw := sign(t, rng, key1)
	if _, err := ks.Check(raw, now, Want{Block: 42, Stamps: []cairn.GenStamp{1001, 1005}, Mode: Copy}); err != nil {
		t.Errorf("stamps in range: %v", err)
	}
	if _, err := ks.Check(raw, now, Want{Block: 42, Stamps: []cairn.GenStamp{1001, 1006}, Mode: Copy}); cairn.KindOf(err) != cairn.KindAccess {
		t.Errorf("a stamp past the range: %v", err)
	}
}

func TestNoKeysYetIsRetry(t *testing.T) {
	var ks KeySet
	_, err := ks.Check(sign(t, readToken(), key1), now, Want{Block: 42, Stamps: []cairn.GenStamp{1001}, Mode: Read})
	if cairn.KindOf(err) != cairn.KindRetry {
		t.Fatalf("%v, want KindRetry", err)
	}
}

func TestSignRefusesNonsense(t *testing.T) {
	for name, tok := range map[string]Token{
		"no modes":       {Block: 1, Expiry: now},
		"unknown mode":   {Block: 1, Expiry: now, Modes: 1 << 7},
		"stamps reverse": {Block: 1, Expiry: now, Modes: Read, MinStamp: 2, MaxStamp: 1},
		"long user":      {Block: 1, Expiry: now, Modes: Read, User: string(bytes.Repeat([]byte{'u'}, MaxUser+1))},
	} {
		if _, err := Sign(tok, key1.Secret); err == nil {
			t.Errorf("%s: signed", name)
		}
	}
}

// memStore is a KeyStore in memory that counts what is written, standing
// in for metad's Pebble (which metad's own tests use).
type memStore struct {
	mu    sync.Mutex
	keys  map[uint32]StoredKey
	fail  bool
	saves int
}

func (s *memStore) LoadKeys() ([]StoredKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []StoredKey
	for _, k := range s.keys {
		out = append(out, k)
	}
	return out, nil
}

func (s *memStore) SaveKey(k StoredKey) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail {
		return errors.New("disk full")
	}
	if s.keys == nil {
		s.keys = map[uint32]StoredKey{}
	}
	s.keys[k.ID] = k
	s.saves++
	return nil
}

func (s *memStore) DeleteKey(id uint32) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.keys, id)
	return nil
}

// TestRotation: a key is handed out an interval before it signs; tokens
// signed with the old one stay good after the rotation until they
// expire; a key expires only after every token it signed; a manager
// reopened on the same store keeps the keys.
func TestRotation(t *testing.T) {
	clock := now
	st := &memStore{}
	cfg := ManagerConfig{Interval: time.Hour, Lifetime: 10 * time.Minute, Now: func() time.Time { return clock }}
	m, err := NewManager(cfg, st)
	if err != nil {
		t.Fatal(err)
	}
	keys, _ := m.Keys()
	if len(keys) != 2 {
		t.Fatalf("%d keys at start, want the current and the next", len(keys))
	}
	var ks KeySet
	ks.Update(keys)
	old, err := m.Issue(42, 1001, 1001, Read, "alice")
	if err != nil {
		t.Fatal(err)
	}
	want := Want{Block: 42, Stamps: []cairn.GenStamp{1001}, Mode: Read}
	clock = clock.Add(time.Hour + time.Minute) // the next key signs now
	fresh, _ := m.Issue(42, 1001, 1001, Read, "alice")
	ot, _ := Parse(old)
	ft, _ := Parse(fresh)
	if ft.KeyID == ot.KeyID {
		t.Fatalf("still signing with key %d after an interval", ot.KeyID)
	}
	// The blockd has not heard from metad since: it holds the new key
	// already.
	if _, err := ks.Check(fresh, clock, want); err != nil {
		t.Errorf("a token of the new key before the blockd's next heartbeat: %v", err)
	}
	keys, _ = m.Keys()
	ks.Update(keys)
	if !slices.ContainsFunc(keys, func(k cairn.BlockKey) bool { return k.ID == ot.KeyID }) {
		t.Errorf("the old key was dropped while its tokens may live")
	}
	// A restart reads the same keys.
	saves := st.saves
	m2, err := NewManager(cfg, st)
	if err != nil {
		t.Fatal(err)
	}
	keys2, _ := m2.Keys()
	if st.saves != saves || !slices.EqualFunc(keys, keys2, func(a, b cairn.BlockKey) bool { return a.ID == b.ID && bytes.Equal(a.Secret, b.Secret) }) {
		t.Errorf("a restart made keys %v, had %v", keys2, keys)
	}
	// Two more intervals: the first key has expired and is gone.
	clock = clock.Add(3 * time.Hour)
	keys, _ = m2.Keys()
	for _, k := range keys {
		if k.ID == ot.KeyID {
			t.Errorf("key %d kept past its expiry", k.ID)
		}
	}
	if len(keys) < 2 {
		t.Errorf("%d keys, want a current and a next", len(keys))
	}
}

func TestManagerNeedsAStoreThatKeepsKeys(t *testing.T) {
	st := &memStore{fail: true}
	if _, err := NewManager(ManagerConfig{}, st); err == nil {
		t.Fatal("a manager without a store that keeps keys")
	}
}

// BenchmarkCheck is what a blockd spends on the token of one op.
func BenchmarkCheck(b *testing.B) {
	var ks KeySet
	ks.Update([]cairn.BlockKey{key1})
	tok := readToken()
	tok.KeyID = key1.ID
	raw, _ := Sign(tok, key1.Secret)
	want := Want{Block: 42, Stamps: []cairn.GenStamp{1001}, Mode: Read}
	for b.Loop() {
		if _, err := ks.Check(raw, now, want); err != nil {
			b.Fatal(err)
		}
	}
}

// TestNewKeyHandedOutBeforeItSigns: after metad was down longer than the
// keys it had made cover, the key it makes at start must sign at once by the
// schedule, but no blockd holds it yet: the newest key handed out before
// the downtime keeps signing, so a blockd holding only the keys it had
// before checks every token; once the new key has been handed out for
// the grace, it signs.
func TestNewKeyHandedOutBeforeItSigns(t *testing.T) {
	clock := now
	st := &memStore{}
	cfg := ManagerConfig{Interval: time.Hour, Lifetime: 10 * time.Minute, Grace: 10 * time.Second, Now: func() time.Time { return clock }}
	m, err := NewManager(cfg, st)
	if err != nil {
		t.Fatal(err)
	}
	keys, _ := m.Keys()
	var ks KeySet
	ks.Update(keys)                      // what the blockd holds when metad stops
	clock = clock.Add(150 * time.Minute) // more than two intervals
	m2, err := NewManager(cfg, st)       // metad starts again
	if err != nil {
		t.Fatal(err)
	}
	want := Want{Block: 42, Stamps: []cairn.GenStamp{1001}, Mode: Read}
	tok, err := m2.Issue(42, 1001, 1001, Read, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ks.Check(tok, clock, want); err != nil {
		t.Fatalf("a token issued before the blockd heard from the restarted metad: %v", err)
	}
	keys, _ = m2.Keys() // the next heartbeat
	ks.Update(keys)
	clock = clock.Add(cfg.Grace)
	tok, _ = m2.Issue(42, 1001, 1001, Read, "alice")
	if _, err := ks.Check(tok, clock, want); err != nil {
		t.Fatalf("a token after the new key was handed out: %v", err)
	}
	if tk, _ := Parse(tok); tk.KeyID != keys[len(keys)-1].ID && tk.KeyID != keys[len(keys)-2].ID {
		t.Fatalf("signed with key %d, want the newest keys %v", tk.KeyID, keys)
	}
}

// Two members of a metad group make keys of the same ID: a token signed by
// either holds at a blockd that has both members' keys, also after one of
// them stopped sending keys (a failover), and updating one member's keys
// leaves the other's alone.
func TestKeysOfSeveralMembers(t *testing.T) {
	a := key1
	b := cairn.BlockKey{ID: 1, Secret: bytes.Repeat([]byte{9}, SecretLen), Expiry: key1.Expiry}
	var ks KeySet
	ks.UpdateFrom("m1:9000", []cairn.BlockKey{a})
	ks.UpdateFrom("m2:9000", []cairn.BlockKey{b})
	want := Want{Block: 42, Stamps: []cairn.GenStamp{1001}, Mode: Read}
	for name, k := range map[string]cairn.BlockKey{"m1": a, "m2": b} {
		if _, err := ks.Check(sign(t, readToken(), k), now, want); err != nil {
			t.Errorf("token of %s refused: %v", name, err)
		}
	}
	ks.UpdateFrom("m2:9000", []cairn.BlockKey{key2})
	if _, err := ks.Check(sign(t, readToken(), a), now, want); err != nil {
		t.Errorf("token of m1 refused after m2's keys changed: %v", err)
	}
	if _, err := ks.Check(sign(t, readToken(), b), now, want); cairn.KindOf(err) != cairn.KindAccess {
		t.Errorf("token of m2's dropped key: %v, want refused", err)
	}
	forged := cairn.BlockKey{ID: 1, Secret: bytes.Repeat([]byte{7}, SecretLen), Expiry: key1.Expiry}
	if _, err := ks.Check(sign(t, readToken(), forged), now, want); cairn.KindOf(err) != cairn.KindAccess {
		t.Errorf("forged token: %v, want refused", err)
	}
}

// TestPassiveManager: a passive manager (a metad group's follower) makes
// no key, refuses to sign without one, and uses the keys another put in
// the store once told they changed; made active (it leads), it rotates
// them itself.
func TestPassiveManager(t *testing.T) {
	clock := now
	st := &memStore{}
	cfg := ManagerConfig{Interval: time.Hour, Lifetime: 10 * time.Minute, Now: func() time.Time { return clock }}
	pcfg := cfg
	pcfg.Passive = true
	f, err := NewManager(pcfg, st)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Issue(1, 1, 1, Read, "alice"); !errors.Is(err, ErrNoKeys) {
		t.Fatalf("a passive manager without keys signed: %v, want ErrNoKeys", err)
	}
	if st.saves != 0 {
		t.Fatalf("a passive manager saved %d keys", st.saves)
	}
	leader, err := NewManager(cfg, st) // the leader makes the keys
	if err != nil {
		t.Fatal(err)
	}
	want, _ := leader.Keys()
	f.Invalidate()
	got, err := f.Keys()
	if err != nil || len(got) != len(want) || got[0].ID != want[0].ID {
		t.Fatalf("the follower's keys after the leader's: %v, %v; want %v", got, err, want)
	}
	tok, err := f.Issue(42, 1, 1, Read, "alice")
	if err != nil {
		t.Fatal(err)
	}
	var ks KeySet
	ks.Update(want)
	if _, err := ks.Check(tok, clock, Want{Block: 42, Stamps: []cairn.GenStamp{1}, Mode: Read}); err != nil {
		t.Fatalf("a token the follower signed fails with the leader's keys: %v", err)
	}
	saves := st.saves
	clock = clock.Add(3 * time.Hour) // past the keys' signing time: the leader would make new ones
	if _, err := f.Keys(); err != nil || st.saves != saves {
		t.Fatalf("a passive manager rotated keys (%d saves, %v)", st.saves-saves, err)
	}
	f.SetPassive(false)
	if _, err := f.Keys(); err != nil || st.saves == saves {
		t.Fatalf("an active manager did not rotate the keys (%v)", err)
	}
}
