package blockd

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"

	"cairn"
	"cairn/checksum"
)

// A replica transition cut by a crash at any point: for each transition
// and each N, the transition runs on a store whose file operations stop
// after N (crashFS), the store is abandoned as a killed process leaves it,
// and a new store opened on the directory must hold the replica as it was
// before the transition or as it is after it — never lost, never
// half-moved, its bytes matching a .meta of its stamp. The start that
// repairs the directory is then itself cut at every point, and the start
// after that must find the same.

const (
	crashChunk = 512
	crashID    = cairn.BlockID(1<<30 + 3)
	gsOld      = cairn.GenStamp(1001)
	gsNew      = cairn.GenStamp(1002)
	gsRecovery = cairn.GenStamp(1005)
	crashLen   = 5*crashChunk + 200 // ends inside a chunk
	crashCut   = 2*crashChunk + 100 // a cut inside a chunk
)

var (
	oldBytes = pattern(crashLen, 11)
	newBytes = pattern(crashLen+700, 77)
)

// outcome is one state a replica may be found in after a crash; data nil
// means no replica at all. prefix allows any prefix of data (a copy cut
// while its bytes were arriving).
type outcome struct {
	state  cairn.ReplicaState
	gs     cairn.GenStamp
	data   []byte
	prefix bool
}

func (o outcome) String() string {
	if o.data == nil {
		return "no replica"
	}
	p := ""
	if o.prefix {
		p = "a prefix of "
	}
	return fmt.Sprintf("%s at %d with %s%d bytes", o.state, o.gs, p, len(o.data))
}

func (o outcome) accepts(f found) bool {
	if o.data == nil || f.data == nil {
		return o.data == nil && f.data == nil
	}
	if o.state != f.state || o.gs != f.gs {
		return false
	}
	if o.prefix {
		return bytes.HasPrefix(o.data, f.data)
	}
	return bytes.Equal(o.data, f.data)
}

var noReplica = outcome{}

// transition is a replica transition: setup (on a sound store) builds the
// state before it and returns what run needs; run is the transition.
type transition struct {
	name  string
	setup func(t *testing.T, s *Store) *ReplicaWriter
	run   func(s *Store, w *ReplicaWriter) error
	// may lists every outcome a crash may leave; the last is the one
	// the transition completed leaves.
	may []outcome
}

func newRBW(t *testing.T, s *Store, gs cairn.GenStamp, data []byte) *ReplicaWriter {
	t.Helper()
	w, err := s.Create(cairn.Block{ID: crashID, GenStamp: gs}, crashChunk)
	if err != nil {
		t.Fatal(err)
	}
	writeAt(t, w, 0, data, 3*crashChunk)
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	return w
}

func newFinalized(t *testing.T, s *Store, gs cairn.GenStamp, data []byte) {
	t.Helper()
	if _, err := newRBW(t, s, gs, data).Finalize(); err != nil {
		t.Fatal(err)
	}
}

// copyOnto is a copy arriving from another blockd: a new replica, written
// whole and finalized.
func copyOnto(s *Store, gs cairn.GenStamp, data []byte) error {
	w, err := s.Create(cairn.Block{ID: crashID, GenStamp: gs}, crashChunk)
	if err != nil {
		return err
	}
	for off := 0; off < len(data); off += 3 * crashChunk {
		piece := data[off:min(off+3*crashChunk, len(data))]
		if err := w.Write(int64(off), piece, checksumsAt(int64(off), piece, crashChunk)); err != nil {
			return err
		}
	}
	_, err = w.Finalize()
	return err
}

var transitions = []transition{
	{
		name: "create",
		run: func(s *Store, _ *ReplicaWriter) error {
			_, err := s.Create(cairn.Block{ID: crashID, GenStamp: gsOld}, crashChunk)
			return err
		},
		may: []outcome{noReplica, {cairn.ReplicaRWR, gsOld, []byte{}, false}},
	},
	{
		name:  "finalize",
		setup: func(t *testing.T, s *Store) *ReplicaWriter { return newRBW(t, s, gsOld, oldBytes) },
		run: func(s *Store, w *ReplicaWriter) error {
			_, err := w.Finalize()
			return err
		},
		may: []outcome{{cairn.ReplicaRWR, gsOld, oldBytes, false}, {cairn.ReplicaFinalized, gsOld, oldBytes, false}},
	},
	{
		name:  "reopen for append",
		setup: func(t *testing.T, s *Store) *ReplicaWriter { newFinalized(t, s, gsOld, oldBytes); return nil },
		run: func(s *Store, _ *ReplicaWriter) error {
			_, err := s.Reopen(cairn.Block{ID: crashID, GenStamp: gsNew}, crashLen)
			return err
		},
		may: []outcome{{cairn.ReplicaFinalized, gsOld, oldBytes, false}, {cairn.ReplicaRWR, gsOld, oldBytes, false},
			{cairn.ReplicaRWR, gsNew, oldBytes, false}},
	},
	{
		name: "reopen for pipeline recovery, cut inside a chunk",
		setup: func(t *testing.T, s *Store) *ReplicaWriter {
			newRBW(t, s, gsOld, oldBytes).Release()
			return nil
		},
		run: func(s *Store, _ *ReplicaWriter) error {
			_, err := s.Reopen(cairn.Block{ID: crashID, GenStamp: gsNew}, crashCut)
			return err
		},
		may: []outcome{{cairn.ReplicaRWR, gsOld, oldBytes, false}, {cairn.ReplicaRWR, gsNew, oldBytes[:crashCut], false}},
	},
	{
		name: "recovery of a replica being written: cut, restamp, finalize",
		setup: func(t *testing.T, s *Store) *ReplicaWriter {
			newRBW(t, s, gsOld, oldBytes)
			if _, err := s.InitRecovery(cairn.Block{ID: crashID, GenStamp: gsOld}, gsRecovery); err != nil {
				t.Fatal(err)
			}
			return nil
		},
		run: func(s *Store, _ *ReplicaWriter) error {
			_, err := s.UpdateRecovery(cairn.Block{ID: crashID, GenStamp: gsOld}, gsRecovery, crashCut)
			return err
		},
		may: []outcome{{cairn.ReplicaRWR, gsOld, oldBytes, false}, {cairn.ReplicaRWR, gsRecovery, oldBytes[:crashCut], false},
			{cairn.ReplicaFinalized, gsRecovery, oldBytes[:crashCut], false}},
	},
	{
		name: "recovery of a finalized replica: cut and restamp in place",
		setup: func(t *testing.T, s *Store) *ReplicaWriter {
			newFinalized(t, s, gsOld, oldBytes)
			if _, err := s.InitRecovery(cairn.Block{ID: crashID, GenStamp: gsOld}, gsRecovery); err != nil {
				t.Fatal(err)
			}
			return nil
		},
		run: func(s *Store, _ *ReplicaWriter) error {
			_, err := s.UpdateRecovery(cairn.Block{ID: crashID, GenStamp: gsOld}, gsRecovery, crashCut)
			return err
		},
		may: []outcome{{cairn.ReplicaFinalized, gsOld, oldBytes, false}, {cairn.ReplicaFinalized, gsRecovery, oldBytes[:crashCut], false}},
	},
	{
		name:  "delete a finalized replica",
		setup: func(t *testing.T, s *Store) *ReplicaWriter { newFinalized(t, s, gsOld, oldBytes); return nil },
		run:   func(s *Store, _ *ReplicaWriter) error { return s.Delete(cairn.Block{ID: crashID, GenStamp: gsOld}) },
		may:   []outcome{{cairn.ReplicaFinalized, gsOld, oldBytes, false}, noReplica},
	},
	{
		name: "delete a replica left in rbw",
		setup: func(t *testing.T, s *Store) *ReplicaWriter {
			newRBW(t, s, gsOld, oldBytes).Release()
			return nil
		},
		run: func(s *Store, _ *ReplicaWriter) error { return s.Delete(cairn.Block{ID: crashID, GenStamp: gsOld}) },
		may: []outcome{{cairn.ReplicaRWR, gsOld, oldBytes, false}, noReplica},
	},
	{
		name:  "copy over an older finalized replica",
		setup: func(t *testing.T, s *Store) *ReplicaWriter { newFinalized(t, s, gsOld, oldBytes); return nil },
		run:   func(s *Store, _ *ReplicaWriter) error { return copyOnto(s, gsNew, newBytes) },
		may: []outcome{{cairn.ReplicaFinalized, gsOld, oldBytes, false}, noReplica,
			{cairn.ReplicaRWR, gsNew, newBytes, true}, {cairn.ReplicaFinalized, gsNew, newBytes, false}},
	},
	{
		name: "copy over an unfinished replica of the same stamp",
		setup: func(t *testing.T, s *Store) *ReplicaWriter {
			newRBW(t, s, gsOld, oldBytes).Release()
			return nil
		},
		run: func(s *Store, _ *ReplicaWriter) error { return copyOnto(s, gsOld, newBytes) },
		may: []outcome{{cairn.ReplicaRWR, gsOld, oldBytes, false}, noReplica,
			{cairn.ReplicaRWR, gsOld, newBytes, true}, {cairn.ReplicaFinalized, gsOld, newBytes, false}},
	},
}

func TestReplicaTransitionsSurviveACrashAtEveryStep(t *testing.T) {
	for _, tr := range transitions {
		t.Run(tr.name, func(t *testing.T) {
			// A clean run counts the steps and leaves the last outcome.
			dir := t.TempDir()
			s, w := prepare(t, dir, tr)
			counter := newCrashFS(-1)
			s.fs = counter
			if err := tr.run(s, w); err != nil {
				t.Fatalf("without a crash: %v", err)
			}
			s.Close()
			steps := counter.done()
			if got, want := inspect(t, dir), tr.may[len(tr.may)-1]; !want.accepts(got) {
				t.Fatalf("after the transition: %v, want %v", got, want)
			}
			t.Logf("%d steps: %s", len(steps), strings.Join(steps, "; "))
			for n := 0; n < len(steps); n++ {
				crashed := filepath.Join(t.TempDir(), "crashed")
				s, w := prepare(t, crashed, tr)
				cfs := newCrashFS(n)
				s.fs = cfs
				if err := tr.run(s, w); err == nil || !cfs.hasCrashed() {
					t.Fatalf("crash after %d steps: the transition returned %v, want the crash", n, err)
				}
				s.Close() // only the lock: the rest is left as a killed process leaves it
				where := fmt.Sprintf("crash after %d steps (after %q)", n, lastStep(steps, n))
				check(t, crashed, tr, where)

				// The start that repairs it, cut at every step too.
				for m := 0; ; m++ {
					again := filepath.Join(t.TempDir(), "again")
					copyTree(t, crashed, again)
					rfs := newCrashFS(m)
					rs, err := openStore(again, zap.NewNop(), rfs)
					if err == nil {
						rs.Close()
						break // the repair needed fewer than m steps
					}
					if !rfs.hasCrashed() {
						t.Fatalf("%s, then the start cut after %d steps: %v", where, m, err)
					}
					check(t, again, tr, fmt.Sprintf("%s, then the start cut after %d steps", where, m))
				}
			}
		})
	}
}

// prepare makes a data directory in the state before tr and returns its
// store, whose file system a test then swaps, and the writer setup made.
func prepare(t *testing.T, dir string, tr transition) (*Store, *ReplicaWriter) {
	t.Helper()
	s, err := openStore(dir, zap.NewNop(), osFS{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	var w *ReplicaWriter
	if tr.setup != nil {
		w = tr.setup(t, s)
	}
	return s, w
}

func lastStep(steps []string, n int) string {
	if n == 0 {
		return "nothing"
	}
	return steps[n-1]
}

// found is what a start finds of the replica.
type found struct {
	state cairn.ReplicaState
	gs    cairn.GenStamp
	data  []byte // nil: no replica
}

func (f found) String() string {
	if f.data == nil {
		return "no replica"
	}
	return fmt.Sprintf("%s at %d with %d bytes", f.state, f.gs, len(f.data))
}

// check opens a store on dir and requires one of tr's outcomes.
func check(t *testing.T, dir string, tr transition, where string) {
	t.Helper()
	got := inspect(t, dir)
	for _, o := range tr.may {
		if o.accepts(got) {
			return
		}
	}
	t.Fatalf("%s: found %v; want one of %v", where, got, tr.may)
}

// inspect opens a store on dir (a normal start), reads the replica back
// through its checksums, and checks that its files are exactly a block
// file and the .meta of its stamp, side by side, with nothing else of the
// block anywhere.
func inspect(t *testing.T, dir string) found {
	t.Helper()
	s, err := openStore(dir, zap.NewNop(), osFS{})
	if err != nil {
		t.Fatalf("start on %s: %v", dir, err)
	}
	defer s.Close()
	var f found
	for _, r := range s.Report() {
		if r.ID == crashID {
			f = found{state: r.State, gs: r.GenStamp}
			f.data = readAll(t, s, r.Block)
			if int64(len(f.data)) != r.Len {
				t.Fatalf("replica %v reads %d bytes", r, len(f.data))
			}
		}
	}
	files := blockFiles(t, dir)
	switch {
	case f.data == nil && len(files) != 0:
		t.Fatalf("no replica, but its files are left: %v", files)
	case f.data != nil:
		sub := filepath.Join("current", "rbw")
		if f.state == cairn.ReplicaFinalized {
			sub = filepath.Join("current", "finalized", checksum.FinalizedSubdir(uint64(crashID)))
		}
		want := []string{filepath.Join(sub, checksum.BlockFileName(uint64(crashID))),
			filepath.Join(sub, checksum.MetaFileName(uint64(crashID), uint64(f.gs)))}
		if strings.Join(files, " ") != strings.Join(want, " ") {
			t.Fatalf("%v: files %v, want %v", f, files, want)
		}
	}
	return f
}

// blockFiles lists every file of the data directory but VERSION, the lock
// and the metadata reserve, relative to it, sorted.
func blockFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(filepath.Join(dir, "current"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel != filepath.Join("current", reserveName) {
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// copyTree copies the data directory from into to, as it is on disk.
func copyTree(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		target := filepath.Join(to, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}
