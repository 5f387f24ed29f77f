package metad

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/raft"

	"cairn"
	"cairn/internal/versionfile"
)

// nsDump is dumpDB restricted to the replicated namespace (nameSpaceKey).
func nsDump(t testing.TB, db *pebble.DB) string {
	t.Helper()
	var b strings.Builder
	for _, l := range strings.Split(dumpDB(t, db), "\n") {
		if l == "" {
			continue
		}
		k, err := strconv.Unquote(l[:strings.LastIndexByte(l, '=')])
		if err != nil {
			t.Fatal(err)
		}
		if nameSpaceKey([]byte(k)) {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// freeRaftAddr returns 127.0.0.1:P with P and P+RaftPortOffset free.
func freeRaftAddr(t *testing.T) string {
	t.Helper()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		l2, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p+RaftPortOffset)))
		l.Close()
		if err == nil {
			l2.Close()
			return net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
		}
	}
	t.Fatal("no free port pair")
	return ""
}

// startGroupOfOne opens a formatted metad as the one member of a group
// (real Raft, real Pebble, its transport on loopback) and waits until it
// leads.
func startGroupOfOne(t *testing.T) *Metad {
	t.Helper()
	addr := freeRaftAddr(t)
	rc := RaftConfig{Self: addr, Peers: []string{addr}, Bootstrap: true, Listen: addr, ElectionTimeout: 100 * time.Millisecond}
	m := openCfg(t, Config{Raft: &rc, Clock: newFakeClock()})
	must(t, m.startReplica(rc))
	t.Cleanup(m.rep.stop) // runs before the store closes (registered after)
	deadline := time.Now().Add(20 * time.Second)
	for !m.rep.ready.Load() {
		if time.Now().After(deadline) {
			t.Fatal("the member of a group of one did not lead within 20s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return m
}

// bufSink is a raft.SnapshotSink into memory.
type bufSink struct {
	bytes.Buffer
	canceled bool
}

func (s *bufSink) ID() string    { return "test" }
func (s *bufSink) Cancel() error { s.canceled = true; return nil }
func (s *bufSink) Close() error  { return nil }

// emptyMember makes a data directory as a new member gets it: the VERSION
// of the formatted one, no store; and opens it as a member, without
// starting Raft.
func emptyMember(t *testing.T, from *Metad) *Metad {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "member")
	must(t, os.MkdirAll(dir, 0o755))
	v, err := versionfile.Read(from.cfg.Dir)
	must(t, err)
	must(t, versionfile.Write(dir, v))
	m, err := Open(Config{Dir: dir, Raft: &RaftConfig{}})
	must(t, err)
	t.Cleanup(func() { _ = m.Close() })
	return m
}

// Mutations through a group of one are applied by the state machine with
// their index; a snapshot of the store restores, on a member that starts
// empty, the same namespace at the same index.
func TestRaftMutationsSnapshotRestore(t *testing.T) {
	m := startGroupOfOne(t)
	ctx := context.Background()
	must(t, m.Mkdirs(ctx, "/a/b", 0o755))
	for i := range 20 {
		if _, err := m.Create(ctx, fmt.Sprintf("/a/b/f%d", i), cairn.CreateOptions{Perm: 0o644, Client: "c1", Closed: true}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := m.Create(ctx, "/a/b/f0", cairn.CreateOptions{Perm: 0o644, Client: "c1", Closed: true}); !errors.Is(err, cairn.ErrExist) {
		t.Fatalf("create of an existing name: %v, want ErrExist", err)
	}
	applied := m.rep.fsm.appliedIndex()
	if v, err := m.st.get(raftAppliedKey); err != nil || binary64(v) != applied || applied == 0 {
		t.Fatalf("stored applied index %x (%v), in memory %d", v, err, applied)
	}
	if fi, err := m.Stat(ctx, "/a/b/f19"); err != nil || fi.Mode.IsDir() {
		t.Fatalf("stat /a/b/f19: %+v, %v", fi, err)
	}

	snap, err := m.rep.fsm.Snapshot()
	must(t, err)
	var sink bufSink
	must(t, snap.Persist(&sink))
	snap.Release()

	n := emptyMember(t, m)
	if _, err := n.st.get(layoutKey); !isNotFound(err) {
		t.Fatalf("a new member's store holds a layout record (%v): it must start empty", err)
	}
	fsm, err := newRaftFSM(n)
	must(t, err)
	must(t, fsm.Restore(io.NopCloser(&sink.Buffer)))
	if got := fsm.appliedIndex(); got != applied {
		t.Fatalf("restored applied index %d, want %d", got, applied)
	}
	if a, b := nsDump(t, m.st.db), nsDump(t, n.st.db); a != b {
		t.Fatalf("restored namespace differs:\n%s\nwant:\n%s", b, a)
	}
	if n.st.nextIno != m.st.nextIno || n.st.numFiles != m.st.numFiles {
		t.Fatalf("restored counters inode %d files %d, want %d %d", n.st.nextIno, n.st.numFiles, m.st.nextIno, m.st.numFiles)
	}
	for _, p := range []string{storeIncoming, storeRestored} {
		if _, err := os.Stat(filepath.Join(n.cfg.Dir, p)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s left behind after a restore: %v", p, err)
		}
	}
}

func binary64(v []byte) uint64 {
	n, _ := parseU64(v)
	return n
}

// The state machine applies an entry once: an entry at or below the
// stored applied index, as Raft replays after a restart, changes nothing,
// and the index survives a reopen.
func TestRaftFSMSkipsApplied(t *testing.T) {
	m := openCfg(t, Config{Raft: &RaftConfig{}})
	fsm, err := newRaftFSM(m)
	must(t, err)
	entry := func(v string) []byte {
		b := m.st.db.NewBatch()
		defer b.Close()
		must(t, b.Set([]byte("xtest"), []byte(v), nil))
		return encodeEntry(entryBatch, b)
	}
	if r := fsm.Apply(&raft.Log{Index: 7, Type: raft.LogCommand, Data: entry("one")}); r != nil {
		t.Fatal(r)
	}
	if r := fsm.Apply(&raft.Log{Index: 7, Type: raft.LogCommand, Data: entry("two")}); r != nil {
		t.Fatal(r)
	}
	if v, _ := m.st.get([]byte("xtest")); string(v) != "one" {
		t.Fatalf("an entry applied again: value %q", v)
	}
	m2 := reopen(t, m, Config{Raft: &RaftConfig{}})
	fsm2, err := newRaftFSM(m2)
	must(t, err)
	if fsm2.appliedIndex() != 7 {
		t.Fatalf("applied index after reopen %d, want 7", fsm2.appliedIndex())
	}
	if r := fsm2.Apply(&raft.Log{Index: 8, Type: raft.LogCommand, Data: []byte{9, 1, 2}}); r == nil {
		t.Fatal("an entry of unknown type was applied")
	}
	if fsm2.appliedIndex() != 7 {
		t.Fatalf("a refused entry moved the applied index to %d", fsm2.appliedIndex())
	}
}

// A snapshot that is not a store is refused, and the store stays.
func TestRaftRestoreRefusesGarbage(t *testing.T) {
	m := openCfg(t, Config{Raft: &RaftConfig{}})
	before := dump(t, m)
	fsm, err := newRaftFSM(m)
	must(t, err)
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	must(t, tw.WriteHeader(&tar.Header{Name: "../escape", Mode: 0o644, Size: 1, Typeflag: tar.TypeReg}))
	_, _ = tw.Write([]byte("x"))
	must(t, tw.Close())
	for name, r := range map[string]io.Reader{"not tar": strings.NewReader("hello"), "path escape": &tb, "empty tar": bytes.NewReader(make([]byte, 1024))} {
		if err := fsm.Restore(io.NopCloser(r)); err == nil {
			t.Errorf("%s: restored", name)
		}
		if got := dump(t, m); got != before {
			t.Fatalf("%s: the store changed", name)
		}
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(m.cfg.Dir), "escape")); err == nil {
		t.Fatal("a snapshot wrote outside its directory")
	}
}

// A restore cut short by a crash leaves the old store or the new one,
// never a mix: before the commit point (storeIncoming) the old store
// stays; after it (storeRestored) the new store takes its place, even if
// the crash came while the old one was being removed.
func TestFinishRestore(t *testing.T) {
	mk := func(dir, name, val string) {
		db, err := pebble.Open(filepath.Join(dir, name), &pebble.Options{})
		must(t, err)
		must(t, db.Set([]byte("k"), []byte(val), pebble.Sync))
		must(t, db.Close())
	}
	read := func(dir string) string {
		db, err := pebble.Open(filepath.Join(dir, storeDir), &pebble.Options{ReadOnly: true})
		must(t, err)
		defer db.Close()
		v, c, err := db.Get([]byte("k"))
		must(t, err)
		defer c.Close()
		return string(v)
	}
	dir := t.TempDir()
	mk(dir, storeDir, "old")
	mk(dir, storeIncoming, "half")
	must(t, finishRestore(dir))
	if v := read(dir); v != "old" {
		t.Fatalf("an incomplete snapshot replaced the store: %q", v)
	}
	mk(dir, storeRestored, "new")
	must(t, finishRestore(dir))
	if v := read(dir); v != "new" {
		t.Fatalf("a complete snapshot did not replace the store: %q", v)
	}
	// Crash after the old store was removed, before the rename.
	mk(dir, storeRestored, "newer")
	must(t, os.RemoveAll(filepath.Join(dir, storeDir)))
	must(t, finishRestore(dir))
	if v := read(dir); v != "newer" {
		t.Fatalf("got %q after a crash between removal and rename", v)
	}
}

func TestRaftLogStore(t *testing.T) {
	l, err := openRaftLog(filepath.Join(t.TempDir(), "log"))
	must(t, err)
	defer l.close()
	if f, _ := l.FirstIndex(); f != 0 {
		t.Fatalf("first index of an empty log %d", f)
	}
	var es []*raft.Log
	for i := uint64(1); i <= 10; i++ {
		es = append(es, &raft.Log{Index: i, Term: 2, Type: raft.LogCommand, Data: []byte(fmt.Sprint(i)), AppendedAt: time.Unix(0, int64(i))})
	}
	must(t, l.StoreLogs(es))
	must(t, l.DeleteRange(1, 3))
	if f, _ := l.FirstIndex(); f != 4 {
		t.Fatalf("first index %d, want 4", f)
	}
	if n, _ := l.LastIndex(); n != 10 {
		t.Fatalf("last index %d, want 10", n)
	}
	var e raft.Log
	must(t, l.GetLog(7, &e))
	if e.Index != 7 || e.Term != 2 || string(e.Data) != "7" || e.AppendedAt.UnixNano() != 7 {
		t.Fatalf("log 7 read back as %+v", e)
	}
	if err := l.GetLog(2, &e); !errors.Is(err, raft.ErrLogNotFound) {
		t.Fatalf("a deleted entry: %v", err)
	}
	must(t, l.SetUint64([]byte("CurrentTerm"), 5))
	if v, err := l.GetUint64([]byte("CurrentTerm")); err != nil || v != 5 {
		t.Fatalf("stable value %d, %v", v, err)
	}
	if v, err := l.Get([]byte("missing")); err != nil || len(v) != 0 {
		t.Fatalf("a missing stable key: %q, %v", v, err)
	}
}

func FuzzDecodeRaftLog(f *testing.F) {
	f.Add(encodeRaftLog(&raft.Log{Index: 3, Term: 1, Type: raft.LogCommand, Data: []byte("x"), Extensions: []byte("e")}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var e raft.Log
		if err := decodeRaftLog(b, &e); err != nil {
			return
		}
		var e2 raft.Log
		if err := decodeRaftLog(encodeRaftLog(&e), &e2); err != nil {
			t.Fatalf("a decoded entry does not decode once encoded again: %v", err)
		}
		if e2.Index != e.Index || e2.Term != e.Term || e2.Type != e.Type || !bytes.Equal(e2.Data, e.Data) || !bytes.Equal(e2.Extensions, e.Extensions) || !e2.AppendedAt.Equal(e.AppendedAt) {
			t.Fatalf("round trip changed %+v into %+v", e, e2)
		}
	})
}

func FuzzSnapshotTar(f *testing.F) {
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	_ = tw.WriteHeader(&tar.Header{Name: "MANIFEST-000001", Mode: 0o644, Size: 2, Typeflag: tar.TypeReg})
	_, _ = tw.Write([]byte("ab"))
	_ = tw.Close()
	f.Add(tb.Bytes())
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, b []byte) {
		root := t.TempDir()
		dir := filepath.Join(root, "in")
		_ = readTar(bytes.NewReader(b), dir)
		es, err := os.ReadDir(root)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			if e.Name() != "in" {
				t.Fatalf("a snapshot wrote %s outside its directory", e.Name())
			}
		}
	})
}

func TestSelfOf(t *testing.T) {
	local := func() []net.IP { return []net.IP{net.ParseIP("127.0.0.1")} }
	for _, c := range []struct {
		peers, listen, want string
	}{
		{"127.0.0.1:9000,127.0.0.1:9010", "127.0.0.1:9010", "127.0.0.1:9010"},
		{"a:9000,b:9010", ":9010", "b:9010"},
		{"127.0.0.1:9000,192.0.2.1:9000,192.0.2.2:9000", ":9000", "127.0.0.1:9000"},
		{"192.0.2.1:9000,192.0.2.2:9000", ":9000", ""},
		{"127.0.0.1:9000", ":9100", ""},
	} {
		ps, err := ParsePeers(c.peers)
		must(t, err)
		got, err := SelfOf(ps, c.listen, local)
		if got != c.want || (err == nil) != (c.want != "") {
			t.Errorf("SelfOf(%s, %s) = %q, %v; want %q", c.peers, c.listen, got, err, c.want)
		}
	}
	for _, bad := range []string{"", ",", "a", "a:0", "a:65535", "a:9000,a:9000", "a:x"} {
		if ps, err := ParsePeers(bad); err == nil {
			t.Errorf("ParsePeers(%q) = %v, accepted", bad, ps)
		}
	}
}

func FuzzParsePeers(f *testing.F) {
	f.Add("a:9000,b:9000")
	f.Add("[::1]:9000, 127.0.0.1:9010")
	f.Fuzz(func(t *testing.T, s string) {
		ps, err := ParsePeers(s)
		if err != nil {
			return
		}
		for _, p := range ps {
			if _, err := RaftAddr(p); err != nil {
				t.Fatalf("ParsePeers(%q) accepted %q: %v", s, p, err)
			}
		}
	})
}

// --format --force on a former member starts a new group: the old Raft
// log and snapshots go with the old store.
func TestFormatRemovesRaftState(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "meta")
	_, err := Format(dir, false)
	must(t, err)
	for _, d := range []string{filepath.Join(raftDir, "log"), storeIncoming, storeRestored} {
		must(t, os.MkdirAll(filepath.Join(dir, d), 0o755))
	}
	_, err = Format(dir, true)
	must(t, err)
	for _, d := range []string{raftDir, storeIncoming, storeRestored} {
		if _, err := os.Stat(filepath.Join(dir, d)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s survived --format --force: %v", d, err)
		}
	}
}

// A member whose store is behind its newest snapshot (it crashed while
// installing one) restores it before Raft starts.
func TestCatchUpFromSnapshot(t *testing.T) {
	m := startGroupOfOne(t)
	ctx := context.Background()
	must(t, m.Mkdirs(ctx, "/s/t", 0o755))
	snap, err := m.rep.fsm.Snapshot()
	must(t, err)
	defer snap.Release()

	n := emptyMember(t, m)
	fsm, err := newRaftFSM(n)
	must(t, err)
	snaps, err := raft.NewFileSnapshotStore(filepath.Join(n.cfg.Dir, raftDir), 2, io.Discard)
	must(t, err)
	sink, err := snaps.Create(raft.SnapshotVersionMax, m.rep.fsm.appliedIndex(), 1, raft.Configuration{}, 1, nil)
	must(t, err)
	must(t, snap.Persist(sink))
	must(t, catchUpFromSnapshot(fsm, snaps))
	if a, b := nsDump(t, m.st.db), nsDump(t, n.st.db); a != b {
		t.Fatalf("the store was not caught up:\n%s\nwant:\n%s", b, a)
	}
	// A store ahead of the snapshot (it applied later entries) is kept.
	b := n.st.db.NewBatch()
	must(t, b.Set([]byte("xlater"), []byte("1"), nil))
	if r := fsm.Apply(&raft.Log{Index: fsm.appliedIndex() + 5, Type: raft.LogCommand, Data: encodeEntry(entryBatch, b)}); r != nil {
		t.Fatal(r)
	}
	b.Close()
	must(t, catchUpFromSnapshot(fsm, snaps))
	if v, err := n.st.get([]byte("xlater")); err != nil || string(v) != "1" {
		t.Fatalf("a store ahead of the snapshot was restored over: %q, %v", v, err)
	}
}
