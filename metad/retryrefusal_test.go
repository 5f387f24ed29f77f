package metad

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"cairn/rpc"
	"cairn/rpc/pb"
)

// A mutation refused inside its handler, before anything was proposed,
// because this member's pipeline of proposals is closed (an entry failed;
// repipe under way), is answered KindNotLeader, "becoming the leader, try
// again shortly". The client makes the same call again, with the same
// IDs, at the member it takes for the leader (client/leader.go: no
// trailer, so the next member, which names this one back). The retry
// cache kept the refusal under the call's IDs, so this member, reopened
// and serving, answers it again, for as long as the cache keeps answers
// (10 minutes): the client gives up after its 30 s, and a change that
// was never tried is reported failed. The same holds for the
// KindUnavailable answers of applyInGroup ("not applied, try again";
// "may or may not have been applied", when the entry did commit and this
// member leads again).
func TestRetryCacheKeepsNoRefusalOfAClosedPipeline(t *testing.T) {
	m := startGroupOfOne(t)
	ns := serveNamespace(t, m)
	id := rpc.NewClientID()
	ctx := context.Background()

	m.rep.repiping.Store(true) // the reopening not begun yet
	m.st.mu.Lock()
	m.st.pipelineBroken = true
	m.st.mu.Unlock()
	_, err := ns.Mkdir(asCall(ctx, id, 1), &pb.MkdirRequest{Path: "/d", Perm: 0o755})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("mkdir with the pipeline closed: %v, want KindNotLeader (FailedPrecondition)", err)
	}

	m.rep.repiping.Store(false)
	m.rep.repipe()
	deadline := time.Now().Add(10 * time.Second)
	for {
		m.st.mu.Lock()
		broken := m.st.pipelineBroken
		m.st.mu.Unlock()
		if !broken {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the pipeline was not reopened")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := ns.Mkdir(ctx, &pb.MkdirRequest{Path: "/e", Perm: 0o755}); err != nil {
		t.Fatalf("a new mkdir once the pipeline reopened: %v", err)
	}
	if _, err := ns.Mkdir(asCall(ctx, id, 1), &pb.MkdirRequest{Path: "/d", Perm: 0o755}); err != nil {
		t.Errorf("the refused mkdir made again (same IDs) once the member serves again: %v; its first attempt changed nothing", err)
	}
}

// A call answered KindUnavailable after its entry's replication failed
// ("leadership was lost... may or may not have been applied") is not
// answered so again when made again at that member: its entry may commit
// after all (under the next leader), and then the call made again is
// replayed (its change is in); if no entry of it was applied, it runs
// again.
func TestRetryCacheUncertainAnswer(t *testing.T) {
	rc := newRetryCache(0, 0, time.Now, nil)
	key := func(n uint64) rpc.CallKey { return rpc.CallKey{Client: rpc.ClientID{1}, Call: n} }
	const method = pb.Namespace_Complete_FullMethodName
	var sum [32]byte

	// Its entry committed while the attempt waited; the same call made
	// again meanwhile waits for the first attempt's answer.
	e, first := rc.begin(key(1), method, sum)
	if !first {
		t.Fatal("a new call is not a first attempt")
	}
	waited := make(chan error, 1)
	go func() {
		resp, err := rc.repeat(context.Background(), e, method, sum)
		if err == nil && resp == nil {
			err = errors.New("answered success with no reply")
		}
		waited <- err
	}()
	rc.applied(key(1), method, sum)
	rc.finishUncertain(e)
	if err := <-waited; status.Code(err) != codes.Unavailable {
		t.Fatalf("the attempt that waited for an uncertain first one: %v, want Unavailable, make it again", err)
	}
	if e2, first := rc.begin(key(1), method, sum); !first || !e2.replay {
		t.Fatalf("made again after its entry was applied: first %v, replay %v; want a replay", first, e2.replay)
	}

	// No entry of it applied: the call made again runs again, and an
	// entry that commits later is recorded then.
	e, _ = rc.begin(key(2), method, sum)
	rc.finishUncertain(e)
	if e2, first := rc.begin(key(2), method, sum); !first || e2.replay {
		t.Fatalf("made again, nothing of it applied: first %v, replay %v; want a fresh run", first, e2.replay)
	}
}

// A call replayed after a failover (applied, its answer lost) whose
// replay is refused or cut short stays applied and unanswered: made
// again, it is replayed once more, not answered the refusal.
func TestRetryCacheReplayRefusedStaysReplayable(t *testing.T) {
	rc := newRetryCache(0, 0, time.Now, nil)
	key := rpc.CallKey{Client: rpc.ClientID{2}, Call: 1}
	const method = pb.Namespace_Append_FullMethodName
	var sum [32]byte
	rc.applied(key, method, sum) // from the log: applied, unanswered
	e, first := rc.begin(key, method, sum)
	if !first || !e.replay {
		t.Fatalf("made again: first %v, replay %v; want a replay", first, e.replay)
	}
	rc.finishUncertain(e)
	if e2, first := rc.begin(key, method, sum); !first || !e2.replay {
		t.Fatalf("made again after a refused replay: first %v, replay %v; want a replay", first, e2.replay)
	}
}
