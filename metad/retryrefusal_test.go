package metad

import (
	"context"
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
