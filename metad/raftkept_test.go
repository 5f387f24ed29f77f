package metad

import (
	"io"
	"testing"
	"time"

	"cairn"
	"cairn/blocktoken"
)

// A group's leader makes the block token keys and sets admin states
// through the log; a member that applies the log holds the same keys
// (its manager makes none of its own) and the same admin states, in
// memory, and so does one restored from a snapshot.
func TestRaftKeptRecordsFollowLog(t *testing.T) {
	m := startGroupOfOne(t)
	keys, err := m.tokens.Keys()
	must(t, err)
	must(t, m.setAdmin("blockd-1", adminRecord{state: adminDecommissioning}))

	n := emptyMember(t, m)
	if _, err := n.tokens.Keys(); err == nil {
		t.Fatal("a member that applied nothing has block token keys of its own")
	}
	fsm, err := newRaftFSM(n)
	must(t, err)
	for _, e := range logEntries(t, m) {
		if r := fsm.Apply(e); r != nil {
			t.Fatalf("apply entry %d: %v", e.Index, r)
		}
	}
	checkKept := func(who string, x *Metad) {
		t.Helper()
		got, err := x.tokens.Keys()
		if err != nil || len(got) != len(keys) {
			t.Fatalf("%s: keys %v, %v; want the leader's %v", who, got, err, keys)
		}
		for i := range keys {
			if got[i].ID != keys[i].ID || string(got[i].Secret) != string(keys[i].Secret) {
				t.Fatalf("%s: key %d differs from the leader's", who, got[i].ID)
			}
		}
		tok, err := x.tokens.Issue(7, 1, 1, blocktoken.Read, "alice")
		must(t, err)
		var ks blocktoken.KeySet
		ks.Update(keys)
		if _, err := ks.Check(tok, time.Now(), blocktoken.Want{Block: 7, Stamps: []cairn.GenStamp{1}, Mode: blocktoken.Read}); err != nil {
			t.Fatalf("%s: a token it signed fails with the leader's keys: %v", who, err)
		}
		x.nodes.mu.Lock()
		st := x.nodes.admin["blockd-1"].state
		x.nodes.mu.Unlock()
		if st != adminDecommissioning {
			t.Fatalf("%s: blockd-1 is %v, want decommissioning", who, st)
		}
	}
	checkKept("a member that applied the log", n)

	// Recommissioned at the leader; a member restored from a snapshot
	// taken since forgets the state.
	must(t, m.setAdmin("blockd-1", adminRecord{}))
	snap, err := m.rep.fsm.Snapshot()
	must(t, err)
	var sink bufSink
	must(t, snap.Persist(&sink))
	snap.Release()
	o := n // holds blockd-1 as decommissioning, from the log
	must(t, fsm.Restore(io.NopCloser(&sink.Buffer)))
	if _, err := o.tokens.Keys(); err != nil {
		t.Fatalf("a member restored from a snapshot has no block token keys: %v", err)
	}
	o.nodes.mu.Lock()
	_, still := o.nodes.admin["blockd-1"]
	o.nodes.mu.Unlock()
	if still {
		t.Fatal("a member restored from a snapshot keeps an admin state the leader cleared")
	}
}
