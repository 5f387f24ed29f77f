package metad

import (
	"context"

	"github.com/cockroachdb/pebble/v2"
	"go.uber.org/zap"
)

// What a metad group's members keep in memory of the records outside the
// namespace, kept up with the log: every record that a member also holds
// in memory — block token keys (blocktokens.go), blockds' admin states
// (decommission.go) — changes through the replicated path (mutate), and
// every member reloads its copy when it applies an entry that changed
// one, or a snapshot. The other records outside the namespace (used join
// tokens and sign-in links, delegation tokens, blockd certificates) are
// read from the store at each use, so applying them is enough.

// reloadKept reloads what a committed entry or a snapshot changed of the
// records kept in memory.
func (m *Metad) reloadKept(k keptSet) {
	if k.blockKeys {
		m.tokens.Invalidate()
	}
	if k.admin {
		admin, err := loadAdmin(m.st.db)
		if err != nil {
			m.log.Error("reload the blockds' admin states after the log changed them", zap.Error(err))
			return
		}
		m.nodes.mu.Lock()
		m.nodes.admin = admin
		m.nodes.mu.Unlock()
	}
}

// keptMutate changes records kept in memory: through the log on a
// group's member, straight in the store (synced) on a single metad.
func (m *Metad) keptMutate(fn func(b *pebble.Batch) error) error {
	if !m.grouped {
		b := m.st.db.NewBatch()
		defer b.Close()
		if err := fn(b); err != nil {
			return err
		}
		return b.Commit(pebble.Sync)
	}
	return m.mutate(context.Background(), fn)
}
