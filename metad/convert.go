package metad

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// A single metad with data becomes the first member of a metad group
// with --convert --peers (RaftConfig.Convert): its store is kept, the
// group starts with it alone, and its first leadership proposes the
// whole store as the log's first entry (replica.seed), which every
// member that joins applies. The seed carries every record of the store
// (seedKey), not the namespace alone: block token keys, delegation
// tokens, used join tokens, blockd certificates and admin states live
// on in the group.

// checkRaftStart refuses to start Raft on a store it would misuse:
// --convert on a store without a namespace (nothing to convert), and a
// store holding a namespace but no Raft state (dir absent) started
// without --convert or --format: as a follower it would apply the
// group's seed over its own records, and an operator who meant to
// convert it would wait for a leader that never comes.
func (m *Metad) checkRaftStart(rc RaftConfig, dir string) error {
	_, err := os.Stat(dir)
	switch {
	case err == nil:
		return nil // a member already
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("raft: %w", err)
	}
	_, lerr := m.st.get(layoutKey)
	switch {
	case lerr != nil && !isNotFound(lerr):
		return fmt.Errorf("raft: read the store: %w", lerr)
	case rc.Convert && lerr != nil:
		return fmt.Errorf("--convert: the store in %s holds no namespace: there is nothing to convert (a new member joins with --join)", m.cfg.Dir)
	case !rc.Bootstrap && lerr == nil:
		return fmt.Errorf("the store in %s holds a namespace but this metad has never been a member of a group: "+
			"to make this metad the first member of a new group keeping its namespace, start it once with --convert; "+
			"to join a group instead, start from an empty data directory", m.cfg.Dir)
	}
	return nil
}

// seedKey reports whether k goes into the seed: every record but the
// state machine's own (the applied index, the pipeline state, dropped
// entries: raftadmit.go), which each member keeps for itself.
func seedKey(k []byte) bool {
	return !bytes.Equal(k, raftAppliedKey) && !bytes.Equal(k, raftPipeKey) && !bytes.HasPrefix(k, raftDroppedPrefix)
}
