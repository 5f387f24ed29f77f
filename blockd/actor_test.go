package blockd

import (
	"testing"

	"go.uber.org/zap"

	"cairn"
)

// Commands are acted on only from a member that says it leads, at the
// newest term seen: not from a follower, nor from a deposed leader that
// still answers at an older term; a single metad (term 0) always.
func TestCommandsOnlyFromTheNewestLeader(t *testing.T) {
	d := &Blockd{log: zap.NewNop()}
	a, b := newActor("m1:9000", nil), newActor("m2:9000", nil)
	d.actors = []*actor{a, b}
	steps := []struct {
		from *actor
		rep  cairn.HeartbeatReply
		act  bool
	}{
		{a, cairn.HeartbeatReply{Follower: true, Term: 1}, false},
		{b, cairn.HeartbeatReply{Term: 2}, true},
		{a, cairn.HeartbeatReply{Term: 1}, false}, // deposed, not yet aware
		{b, cairn.HeartbeatReply{Term: 2}, true},
		{a, cairn.HeartbeatReply{Term: 3}, true}, // elected again, later
		{b, cairn.HeartbeatReply{Follower: true, Term: 3}, false},
	}
	for i, s := range steps {
		if got := d.fromLeader(s.from, s.rep); got != s.act {
			t.Errorf("step %d: reply %+v from %s: act %v, want %v", i, s.rep, s.from.addr, got, s.act)
		}
	}
	if d.leaderAddr() != "m1:9000" || !a.leads.Load() || b.leads.Load() {
		t.Errorf("leader %q (m1 leads %v, m2 %v), want m1 alone", d.leaderAddr(), a.leads.Load(), b.leads.Load())
	}
	single := &Blockd{log: zap.NewNop()}
	s := newActor("m:9000", nil)
	single.actors = []*actor{s}
	for range 2 {
		if !single.fromLeader(s, cairn.HeartbeatReply{}) {
			t.Error("a single metad's commands ignored")
		}
	}
}
