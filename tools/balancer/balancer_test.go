package balancer

import (
	"context"
	"strings"
	"testing"
	"time"

	"cairn"
)

func TestByteDesc(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 512: "512 B", 1536: "1.5 KB", 10<<20 + 10<<10: "10.01 MB", 3 << 30: "3 GB"} {
		if got := byteDesc(n); got != want {
			t.Errorf("byteDesc(%d) = %q, want %q", n, got, want)
		}
	}
}

// scripted is metad's side of the balancer as a script: each Balance call
// answers the next status (the last one again once they run out), and
// the actions asked for are recorded. It stands for metad, which is not
// under test here: the end-to-end test runs the real one.
type scripted struct {
	cairn.Admin
	steps   []cairn.BalanceStatus
	actions []cairn.BalanceAction
	onCall  func(n int)
	err     error // every call's answer, when set
}

func (s *scripted) Balance(_ context.Context, r cairn.BalanceRequest) (cairn.BalanceStatus, error) {
	s.actions = append(s.actions, r.Action)
	if s.onCall != nil {
		s.onCall(len(s.actions))
	}
	if s.err != nil {
		return cairn.BalanceStatus{}, s.err
	}
	st := s.steps[min(len(s.actions)-1, len(s.steps)-1)]
	return st, nil
}

func repeat(n int, steps ...cairn.BalanceStatus) []cairn.BalanceStatus {
	var out []cairn.BalanceStatus
	for range n {
		out = append(out, steps...)
	}
	return out
}

func contains(lines []string, l string) bool {
	for _, x := range lines {
		if x == l {
			return true
		}
	}
	return false
}

var fast = options{threshold: 10, idleIterations: 5, poll: time.Millisecond}

// TestRunPrintsHDFSLines: the header, a line an iteration and HDFS's end
// line, with its exit status: balanced (0), nothing can move (254),
// nothing moved for -idle-iterations (253), -iterations ran out (1), and
// interrupted (250), which drops the moves not yet sent.
func TestRunPrintsHDFSLines(t *testing.T) {
	moving := cairn.BalanceStatus{BytesLeftToMove: 5 << 20, BytesBeingMoved: 1 << 20, MovesScheduled: 1, MovesPending: 1}
	for _, c := range []struct {
		name   string
		steps  []cairn.BalanceStatus
		o      func(options) options
		code   int
		last   string
		iters  int
		action cairn.BalanceAction // the last action asked for
	}{
		{"balanced", []cairn.BalanceStatus{{}, moving, {BytesMoved: 1 << 20}, {BytesMoved: 1 << 20}}, nil, ExitSuccess, BalancedLine, 1, cairn.BalanceSchedule},
		{"no move", []cairn.BalanceStatus{{}, {BytesLeftToMove: 100}}, nil, ExitNoMoveBlock, NoMoveLine, 1, cairn.BalanceSchedule},
		{"no progress", append([]cairn.BalanceStatus{{}}, repeat(5, moving, cairn.BalanceStatus{BytesLeftToMove: 5 << 20})...), nil, ExitNoMoveProgress, "No block has been moved for 5 iterations. Exiting...", 5, cairn.BalanceStatusOnly},
		{"iterations", []cairn.BalanceStatus{{}, moving, {BytesLeftToMove: 4 << 20, BytesMoved: 1 << 20}}, func(o options) options { o.iterations = 1; return o },
			ExitInProgress, "Stopped after 1 iterations, 4 MB left to move.", 1, cairn.BalanceStatusOnly},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := fast
			if c.o != nil {
				o = c.o(o)
			}
			var out strings.Builder
			s := &scripted{steps: c.steps}
			code := run(context.Background(), s, o, &out)
			lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
			if code != c.code || lines[0] != Header || !contains(lines[len(lines)-2:], c.last) {
				t.Fatalf("exit %d, output:\n%s\nwant exit %d ending %q", code, out.String(), c.code, c.last)
			}
			n := 0
			for _, l := range lines[1:] {
				if strings.HasSuffix(l, "B") && len(strings.Fields(l)) == 12 {
					n++ // "Dec 1, 2026 7:56:30 PM  0  0 B  100 B  0 B"
				}
			}
			if n < c.iters {
				t.Fatalf("%d progress lines, want %d:\n%s", n, c.iters, out.String())
			}
			// The last step lets another balancer run.
			if a, end := s.actions[len(s.actions)-2], s.actions[len(s.actions)-1]; a != c.action || end != cairn.BalanceStop {
				t.Fatalf("last actions %d then %d, want %d then %d (stop)", a, end, c.action, cairn.BalanceStop)
			}
		})
	}

	// Interrupted while moves are under way: Stop is asked for, exit 250.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := &scripted{steps: []cairn.BalanceStatus{{}, moving}, onCall: func(n int) {
		if n == 3 {
			cancel()
		}
	}}
	var out strings.Builder
	if code := run(ctx, s, fast, &out); code != ExitInterrupted || s.actions[len(s.actions)-1] != cairn.BalanceStop {
		t.Fatalf("interrupted: exit %d, actions %v; output:\n%s", code, s.actions, out.String())
	}
}

// TestRunRefusedAsSecond: metad refusing a second balancer (KindBusy) is
// HDFS's line and exit status, and the refused balancer sends no stop
// (which would drop the running one's moves).
func TestRunRefusedAsSecond(t *testing.T) {
	s := &scripted{err: cairn.E("metad.Balance", cairn.KindBusy, "", "Another Balancer is running.")}
	var out strings.Builder
	code := run(context.Background(), s, fast, &out)
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if code != ExitIOException || lines[len(lines)-1] != AnotherLine {
		t.Fatalf("exit %d, output:\n%s\nwant exit %d ending %q", code, out.String(), ExitIOException, AnotherLine)
	}
	if len(s.actions) != 1 || s.actions[0] != cairn.BalanceStatusOnly {
		t.Fatalf("actions %v, want the one status step", s.actions)
	}
}
