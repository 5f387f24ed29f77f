package blocktoken

import (
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"cairn"
)

// Defaults of the keys' rotation and the tokens' life (HDFS's
// dfs.block.access.key.update.interval and token.lifetime).
const (
	DefaultKeyInterval = 10 * time.Hour
	DefaultLifetime    = 10 * time.Minute
)

// SecretLen is the length of a key's secret.
const SecretLen = 32

// KeyStore keeps metad's keys across restarts, so a restart neither
// invalidates the tokens it handed out nor leaves blockds with keys metad
// no longer knows.
type KeyStore interface {
	LoadKeys() ([]StoredKey, error)
	SaveKey(StoredKey) error
	DeleteKey(id uint32) error
}

// StoredKey is a key as metad keeps it: the key and from when it signs.
type StoredKey struct {
	cairn.BlockKey
	SignFrom time.Time
}

// ManagerConfig configures a Manager. Zero values take the defaults.
type ManagerConfig struct {
	// Interval is how long one key signs before the next takes over.
	Interval time.Duration
	// Lifetime is how long a token is good for.
	Lifetime time.Duration
	// Grace is how long after a key is first handed out (Keys) every live
	// blockd holds it: a heartbeat interval and some. A key signs only
	// once it has been handed out for Grace (DefaultGrace).
	Grace time.Duration
	Now   func() time.Time
	// Passive starts the manager passive (SetPassive): a member of a
	// metad group, which makes keys only while it leads.
	Passive bool
}

// ErrNoKeys: a passive manager holds no key yet (the group's leader has
// made none this member applied).
var ErrNoKeys = errors.New("no block token keys yet: the metad group's leader makes them")

// DefaultGrace is ManagerConfig.Grace's default.
const DefaultGrace = 10 * time.Second

// Manager is metad's side of block tokens (HDFS's BlockTokenSecretManager
// in its master mode): it makes keys, signs tokens with the current one
// and rotates them. A key signs for Interval from its SignFrom and is
// handed to blockds one interval before that (so every blockd holds it
// before the first token it signs arrives); it expires two intervals
// plus a token's lifetime after it began to sign, so every token it
// signed expires first. A key signs only once it has been handed out
// for Grace: when a key must begin to sign before that (metad was down
// longer than an interval, so the next key was never handed out), the
// newest key handed out before keeps signing meanwhile, if it outlives
// the token. It is safe for concurrent use.
type Manager struct {
	cfg ManagerConfig
	st  KeyStore

	mu   sync.Mutex
	keys []StoredKey // by ID, which grows with SignFrom
	// handed is when each key was first handed out; keys loaded from the
	// store were handed out before metad stopped (the zero time).
	handed map[uint32]time.Time

	// passive: the keys are another's (a metad group's leader), kept in
	// the store by it; m makes and drops none, and reloads them from the
	// store once stale (Invalidate).
	passive, stale atomic.Bool
}

// SetPassive makes m passive (a follower of a metad group) or active
// (its leader, which makes and rotates the keys; it reloads them first).
func (m *Manager) SetPassive(p bool) {
	m.stale.Store(true)
	m.passive.Store(p)
}

// Resave writes every key m holds to the store again: a metad group's
// new leader makes the group hold its keys, whatever another member kept
// of its own before it was one.
func (m *Manager) Resave() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.reload(); err != nil {
		return err
	}
	for _, k := range m.keys {
		if err := m.st.SaveKey(k); err != nil {
			return fmt.Errorf("keep block token key %d: %w", k.ID, err)
		}
	}
	return nil
}

// Invalidate says the store's keys changed under m (a metad group's
// member applied the leader's): m reloads them before its next use.
func (m *Manager) Invalidate() { m.stale.Store(true) }

// reload reads the keys from the store again when they are stale. m.mu
// is held.
func (m *Manager) reload() error {
	if !m.stale.Swap(false) {
		return nil
	}
	keys, err := m.st.LoadKeys()
	if err != nil {
		m.stale.Store(true)
		return fmt.Errorf("load block token keys: %w", err)
	}
	slices.SortFunc(keys, func(a, b StoredKey) int { return int(int64(a.ID) - int64(b.ID)) })
	handed := make(map[uint32]time.Time, len(keys))
	for _, k := range keys {
		handed[k.ID] = m.handed[k.ID] // the zero time for a key this member never handed out: handed out by the leader
	}
	m.keys, m.handed = keys, handed
	return nil
}

// NewManager loads the keys st keeps and makes those missing.
func NewManager(cfg ManagerConfig, st KeyStore) (*Manager, error) {
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultKeyInterval
	}
	if cfg.Lifetime <= 0 {
		cfg.Lifetime = DefaultLifetime
	}
	if cfg.Grace <= 0 {
		cfg.Grace = DefaultGrace
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	keys, err := st.LoadKeys()
	if err != nil {
		return nil, fmt.Errorf("load block token keys: %w", err)
	}
	slices.SortFunc(keys, func(a, b StoredKey) int { return int(int64(a.ID) - int64(b.ID)) })
	m := &Manager{cfg: cfg, st: st, keys: keys, handed: map[uint32]time.Time{}}
	m.passive.Store(cfg.Passive)
	for _, k := range keys {
		m.handed[k.ID] = time.Time{}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.refresh(m.cfg.Now()); err != nil && !errors.Is(err, ErrNoKeys) {
		return nil, err
	}
	return m, nil
}

// Lifetime is how long the tokens m issues are good for.
func (m *Manager) Lifetime() time.Duration { return m.cfg.Lifetime }

// refresh drops expired keys and makes the current and the next one when
// they are missing; a passive manager only reloads them when stale, and
// fails without any. m.mu is held.
func (m *Manager) refresh(now time.Time) error {
	if err := m.reload(); err != nil {
		return err
	}
	if m.passive.Load() {
		if len(m.keys) == 0 {
			return ErrNoKeys
		}
		return nil
	}
	for len(m.keys) > 0 && !now.Before(m.keys[0].Expiry) && len(m.keys) > 1 {
		if err := m.st.DeleteKey(m.keys[0].ID); err != nil {
			return fmt.Errorf("drop expired block token key %d: %w", m.keys[0].ID, err)
		}
		delete(m.handed, m.keys[0].ID)
		m.keys = m.keys[1:]
	}
	for len(m.keys) == 0 || !now.Before(m.keys[len(m.keys)-1].SignFrom) {
		from, id := now, uint32(1)
		if n := len(m.keys); n > 0 {
			last := m.keys[n-1]
			from, id = last.SignFrom.Add(m.cfg.Interval), last.ID+1
			if from.Before(now) {
				from = now
			}
		}
		secret := make([]byte, SecretLen)
		if _, err := rand.Read(secret); err != nil {
			return fmt.Errorf("make a block token key: %w", err)
		}
		k := StoredKey{BlockKey: cairn.BlockKey{ID: id, Secret: secret, Expiry: from.Add(2*m.cfg.Interval + m.cfg.Lifetime)}, SignFrom: from}
		if err := m.st.SaveKey(k); err != nil {
			return fmt.Errorf("keep block token key %d: %w", id, err)
		}
		m.keys = append(m.keys, k)
	}
	return nil
}

// current is the key that signs at now. m.mu is held, after refresh.
func (m *Manager) current(now time.Time) StoredKey {
	cur := m.keys[0]
	for _, k := range m.keys {
		if !now.Before(k.SignFrom) {
			cur = k
		}
	}
	return cur
}

// signer is the key that signs at now: the current one once it has been
// handed out for Grace, else the newest key handed out that long and
// alive for a token's lifetime, else the current one all the same.
// m.mu is held, after refresh.
func (m *Manager) signer(now time.Time) StoredKey {
	cur := m.current(now)
	delivered := func(k StoredKey) bool {
		at, ok := m.handed[k.ID]
		return ok && !now.Before(at.Add(m.cfg.Grace))
	}
	if delivered(cur) {
		return cur
	}
	for i := len(m.keys) - 1; i >= 0; i-- {
		k := m.keys[i]
		if k.ID < cur.ID && delivered(k) && !now.Add(m.cfg.Lifetime).After(k.Expiry) {
			return k
		}
	}
	return cur
}

// Keys are the keys blockds need: every one not expired, the next one
// included.
func (m *Manager) Keys() ([]cairn.BlockKey, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.cfg.Now()
	if err := m.refresh(now); err != nil {
		return nil, err
	}
	out := make([]cairn.BlockKey, 0, len(m.keys))
	for _, k := range m.keys {
		if now.Before(k.Expiry) {
			out = append(out, k.BlockKey)
			if _, ok := m.handed[k.ID]; !ok {
				m.handed[k.ID] = now
			}
		}
	}
	return out, nil
}

// Issue signs a token for block at stamps lo..hi allowing modes, for
// user, expiring a lifetime from now.
func (m *Manager) Issue(block cairn.BlockID, lo, hi cairn.GenStamp, modes Mode, user string) ([]byte, error) {
	m.mu.Lock()
	now := m.cfg.Now()
	if err := m.refresh(now); err != nil {
		m.mu.Unlock()
		return nil, err
	}
	k := m.signer(now)
	m.mu.Unlock()
	if len(user) > MaxUser {
		user = user[:MaxUser]
	}
	return Sign(Token{KeyID: k.ID, Expiry: now.Add(m.cfg.Lifetime), Block: block, MinStamp: lo, MaxStamp: hi, Modes: modes, User: user}, k.Secret)
}
