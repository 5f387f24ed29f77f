package metad

import (
	"context"
	"errors"
	"io/fs"
	"strings"
	"testing"
	"time"

	"cairn"
)

// concatFixture writes, as the superuser, in /d (drwxrwxrwx): t (two
// full blocks), s1 (one full block, with an attribute), s2 (a full block
// and 100 bytes), each block reported by node n1; it returns the blocks.
func concatFixture(t *testing.T, m *Metad) map[string][]cairn.Block {
	t.Helper()
	su := context.Background()
	fakeNode(t, m, "n1")
	must(t, m.Mkdir(su, "/d", 0o777))
	out := map[string][]cairn.Block{
		"t":  writeFile(t, su, m, "/d/t", "c", "n1", false, testBlock, testBlock),
		"s1": writeFile(t, su, m, "/d/s1", "c", "n1", false, testBlock),
		"s2": writeFile(t, su, m, "/d/s2", "c", "n1", false, testBlock, 100),
	}
	must(t, m.SetXattr(su, "/d/s1", "user.k", []byte("v"), 0))
	return out
}

// TestConcat: the sources' blocks follow the target's in order, the
// sources are gone with their attributes, the target's size and times
// follow, the store checks clean, and all of it holds after a restart.
func TestConcat(t *testing.T) {
	clock := newFakeClock()
	m := openCfg(t, Config{Clock: clock})
	blocks := concatFixture(t, m)
	su := context.Background()
	before := stat(t, m, "/d/t")
	st0, _ := m.Statfs(su)
	clock.Add(time.Minute)
	must(t, m.Concat(su, "/d/t", []string{"/d/s1", "/d/s2"}))

	want := append(append(append([]cairn.Block(nil), blocks["t"]...), blocks["s1"]...), blocks["s2"]...)
	verify := func(m *Metad, reported bool) {
		t.Helper()
		fb, err := m.BlockLocations(su, cairn.FileRef{Path: "/d/t"})
		must(t, err)
		if fb.FileID != before.Inode || fb.Size != 4*testBlock+100 || len(fb.Blocks) != len(want) {
			t.Fatalf("target after concat: file %d, %d bytes, %d blocks; want file %d, %d bytes, %d blocks",
				fb.FileID, fb.Size, len(fb.Blocks), before.Inode, 4*testBlock+100, len(want))
		}
		var off int64
		for i, lb := range fb.Blocks {
			if lb.Block != want[i] || lb.Offset != off {
				t.Fatalf("block %d: %s at %d, want %s at %d", i, lb.Block, lb.Offset, want[i], off)
			}
			if reported && (len(lb.Locations) != 1 || lb.Locations[0].StorageID != "n1") {
				t.Fatalf("block %d: locations %v, want n1's replica", i, lb.Locations)
			}
			off += lb.Len
		}
		for _, s := range []string{"/d/s1", "/d/s2"} {
			if _, err := m.Stat(su, s); !errors.Is(err, cairn.ErrNotExist) {
				t.Fatalf("source %s after concat: %v, want it gone", s, err)
			}
		}
		fi := stat(t, m, "/d/t")
		if !fi.ModTime.Equal(clock.Now()) || fi.Writing {
			t.Fatalf("target: mtime %v writing %v; want the concat's time, closed", fi.ModTime, fi.Writing)
		}
		if d := stat(t, m, "/d"); !d.ModTime.Equal(clock.Now()) {
			t.Fatalf("directory mtime %v, want the concat's time", d.ModTime)
		}
	}
	verify(m, true)
	if st, _ := m.Statfs(su); st.Files != st0.Files-2 {
		t.Fatalf("files %d after concat, want %d", st.Files, st0.Files-2)
	}
	if strings.Contains(dump(t, m), "user.k") {
		t.Fatal("the source's attribute outlived it")
	}
	r := checkNow(t, m)
	if r.Xattrs != 0 || r.Blocks != int64(len(want)) {
		t.Fatalf("check after concat: %d xattrs, %d blocks; want 0 and %d", r.Xattrs, r.Blocks, len(want))
	}
	m = reopen(t, m, Config{Clock: clock})
	verify(m, false) // no blockd has reported since the restart
	mustCheckOpen(t, m)
}

// TestConcatRefusals: every rule refused with its kind and message, and
// the store exactly as it was.
func TestConcatRefusals(t *testing.T) {
	m := openCfg(t, Config{Clock: newFakeClock()})
	concatFixture(t, m)
	su := context.Background()
	must(t, m.Mkdir(su, "/e", 0o777))
	writeFile(t, su, m, "/e/x", "c", "n1", false, testBlock)
	writeFile(t, su, m, "/d/short", "c", "n1", false, 10)
	writeFile(t, su, m, "/d/open", "c", "n1", true, testBlock)
	writeFile(t, su, m, "/d/linked", "c", "n1", false, testBlock)
	must(t, m.Link(su, "/d/linked", "/d/linked2"))
	if _, err := m.Create(su, "/d/empty", cairn.CreateOptions{Client: "c"}); err != nil {
		t.Fatal(err)
	}
	must(t, m.Complete(su, cairn.WriterRef{Path: "/d/empty", Client: "c"}, nil))
	if _, err := m.Create(su, "/d/big", cairn.CreateOptions{Client: "c", BlockSize: 2 * testBlock}); err != nil {
		t.Fatal(err)
	}
	lb, err := m.AddBlock(su, cairn.WriterRef{Path: "/d/big", Client: "c"}, nil, nil)
	must(t, err)
	lb.Len = 2 * testBlock
	must(t, m.BlocksReceived(su, "n1", finalized(lb.Block)))
	must(t, m.Complete(su, cairn.WriterRef{Path: "/d/big", Client: "c"}, &lb.Block))
	must(t, m.Symlink(su, "s1", "/d/ln"))
	must(t, m.Mkdir(su, "/d/sub", 0o755))
	// bob may write /ro/t but not /ro/t0, read /ro/s, and not write /ro.
	bob := as("bob", "users")
	must(t, m.Mkdir(su, "/ro", 0o755))
	for p, mode := range map[string]fs.FileMode{"/ro/t0": 0o644, "/ro/t": 0o666, "/ro/s": 0o644} {
		writeFile(t, su, m, p, "c", "n1", false, testBlock)
		if _, err := m.SetAttr(su, p, cairn.Attr{Perm: &mode}); err != nil {
			t.Fatal(err)
		}
	}
	before := dump(t, m)
	for _, tc := range []struct {
		name    string
		ctx     context.Context
		target  string
		sources []string
		kind    error
		msg     string
	}{
		{"no sources", su, "/d/t", nil, cairn.ErrInvalid, "No sources given"},
		{"relative source", su, "/d/t", []string{"s1"}, cairn.ErrInvalid, "not absolute"},
		{"no target", su, "/d/nope", []string{"/d/s1"}, cairn.ErrNotExist, ""},
		{"no source", su, "/d/t", []string{"/d/nope"}, cairn.ErrNotExist, ""},
		{"target directory", su, "/d/sub", []string{"/d/s1"}, cairn.ErrIsDir, "Path is not a file"},
		{"source directory", su, "/d/t", []string{"/d/sub"}, cairn.ErrIsDir, "Path is not a file"},
		{"source symlink", su, "/d/t", []string{"/d/ln"}, cairn.ErrInvalid, "Path is not a file"},
		{"target open", su, "/d/open", []string{"/d/s1"}, cairn.ErrInvalid, "is under construction"},
		{"source open", su, "/d/t", []string{"/d/open"}, cairn.ErrInvalid, "invalid or empty or underConstruction"},
		{"source empty", su, "/d/t", []string{"/d/empty"}, cairn.ErrInvalid, "invalid or empty or underConstruction"},
		{"source is target", su, "/d/t", []string{"/d/s1", "/d/t"}, cairn.ErrInvalid, "is the same with the target file"},
		{"duplicate", su, "/d/t", []string{"/d/s1", "/d/s2", "/d/s1"}, cairn.ErrInvalid, "at least two of the source files are the same"},
		{"other directory", su, "/d/t", []string{"/e/x"}, cairn.ErrInvalid, "is not in the same directory with the target"},
		{"block size", su, "/d/t", []string{"/d/big"}, cairn.ErrInvalid, "has block size"},
		{"target last block short", su, "/d/s2", []string{"/d/s1"}, cairn.ErrInvalid, "the target's last block"},
		{"inner source short", su, "/d/t", []string{"/d/s2", "/d/s1"}, cairn.ErrInvalid, "only a full block"},
		{"short source not last", su, "/d/t", []string{"/d/short", "/d/s1"}, cairn.ErrInvalid, "only a full block"},
		{"hard-linked source", su, "/d/t", []string{"/d/linked"}, cairn.ErrInvalid, "has 2 names"},
		{"no write on target", bob, "/ro/t0", []string{"/ro/s"}, cairn.ErrAccess, `access=WRITE, inode="/ro/t0"`},
		{"no write on directory", bob, "/ro/t", []string{"/ro/s"}, cairn.ErrAccess, `access=WRITE_EXECUTE, inode="/ro"`},
	} {
		err := m.Concat(tc.ctx, tc.target, tc.sources)
		if !errors.Is(err, tc.kind) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: %v, want %v with %q", tc.name, err, tc.kind, tc.msg)
		}
	}
	if after := dump(t, m); after != before {
		t.Fatalf("a refused concat changed the store:\n%s", diffLines(before, after))
	}
	// In safe mode metad's in-process callers (WebHDFS) are refused too;
	// over RPC the gate refuses every call of rpc.Mutations.
	_, err = m.SafeMode(su, cairn.SafeModeEnter)
	must(t, err)
	if err := (gatedNS{m}).Concat(su, "/d/t", []string{"/d/s1"}); !errors.Is(err, cairn.ErrSafeMode) {
		t.Fatalf("concat in safe mode: %v", err)
	}
	mustCheckOpen(t, m)
}

// TestConcatReplication: the replication monitor finds a moved block's
// file by its "k" key, so a moved block that loses a replica is copied
// for the target, at the target's replication.
func TestConcatReplication(t *testing.T) {
	clock := newFakeClock()
	m := openCfg(t, Config{Clock: clock, DeadAfter: time.Minute, Heartbeat: time.Second})
	nodes := registerNodes(t, m, 4)
	ctx := context.Background()
	must(t, m.Mkdir(ctx, "/d", 0o755))
	writeOneBlock(t, m, "/d/t", 2, testBlock)
	sb, holders := writeOneBlock(t, m, "/d/s", 2, 500)
	must(t, m.Concat(ctx, "/d/t", []string{"/d/s"}))
	must(t, m.checkReplication(true))
	for id, cmds := range heartbeatAll(t, m, nodes, "") {
		if len(cmds) != 0 {
			t.Fatalf("fully replicated after concat: %s got %v", id, cmds)
		}
	}
	dead := holders[0].StorageID
	clock.Add(30 * time.Second)
	heartbeatAll(t, m, nodes, dead)
	clock.Add(40 * time.Second)
	heartbeatAll(t, m, nodes, dead)
	must(t, m.checkReplication(false))
	var copies []cairn.Command
	for _, cmds := range heartbeatAll(t, m, nodes, dead) {
		for _, c := range cmds {
			if c.Kind == cairn.CmdTransfer && len(c.Blocks) > 0 && c.Blocks[0].ID == sb.ID {
				copies = append(copies, c)
			}
		}
	}
	if len(copies) != 1 {
		t.Fatalf("a moved block lost a replica: copies %v, want one of %s", copies, sb)
	}
	// Raising the target's replication raises the moved block's too.
	three := 3
	if _, err := m.SetAttr(ctx, "/d/t", cairn.Attr{Replication: &three}); err != nil {
		t.Fatal(err)
	}
	if want, err := m.wantReplicas(sb.ID); err != nil || want != 3 {
		t.Fatalf("the moved block wants %d replicas (%v), want the target's 3", want, err)
	}
}

// TestConcatBlockIDsOutOfOrder: sources older than the target, and out of
// their age order, leave the target's block IDs out of order with their
// indexes; every block is still found, by storedBlock and by the lookup
// block reports and the replication monitor use.
func TestConcatBlockIDsOutOfOrder(t *testing.T) {
	m := openCfg(t, Config{Clock: newFakeClock()})
	su := context.Background()
	fakeNode(t, m, "n1")
	must(t, m.Mkdir(su, "/d", 0o755))
	older := writeFile(t, su, m, "/d/old", "c", "n1", false, testBlock, testBlock, testBlock)
	mid := writeFile(t, su, m, "/d/mid", "c", "n1", false, testBlock, testBlock, 7)
	tgt := writeFile(t, su, m, "/d/t", "c", "n1", false, testBlock, testBlock, testBlock, testBlock)
	must(t, m.Concat(su, "/d/t", []string{"/d/old", "/d/mid"}))
	ino := stat(t, m, "/d/t").Inode
	all := append(append(append([]cairn.Block(nil), tgt...), older...), mid...)
	l, err := m.newBlockLookup()
	must(t, err)
	defer l.close()
	for _, b := range all {
		got, writing, ok, err := m.storedBlock(b.ID)
		if err != nil || !ok || writing || got != b {
			t.Fatalf("storedBlock(%s) = %s, %v, %v, %v", b, got, writing, ok, err)
		}
		got, f, ok, err := l.find(b.ID)
		if err != nil || !ok || got != b || f.ino != ino || f.want != 2 {
			t.Fatalf("lookup of %s = %s in file %d wanting %d, %v, %v; want file %d wanting 2", b, got, f.ino, f.want, ok, err, ino)
		}
	}
	checkNow(t, m)
}

// TestConcatReplicationSeenByNextRound: a block moved to a target of
// another replication is judged at the next round, not at the next full
// check: quick rounds skip blocks with the default count of replicas, as
// the moved block had for its source.
func TestConcatReplicationSeenByNextRound(t *testing.T) {
	clock := newFakeClock()
	m := openCfg(t, Config{Clock: clock, DeadAfter: time.Minute, Heartbeat: time.Second})
	nodes := registerNodes(t, m, 4)
	ctx := context.Background()
	must(t, m.Mkdir(ctx, "/d", 0o755))
	writeOneBlock(t, m, "/d/t", 1, testBlock)
	sb, _ := writeOneBlock(t, m, "/d/s", m.cfg.Replication, 500)
	must(t, m.checkReplication(true))
	heartbeatAll(t, m, nodes, "")
	must(t, m.Concat(ctx, "/d/t", []string{"/d/s"}))
	must(t, m.checkReplication(false))
	deletes := 0
	for _, cmds := range heartbeatAll(t, m, nodes, "") {
		for _, c := range cmds {
			if c.Kind == cairn.CmdDelete {
				for _, b := range c.Blocks {
					if b.ID == sb.ID {
						deletes++
					}
				}
			}
		}
	}
	if want := m.cfg.Replication - 1; deletes != want {
		t.Fatalf("the moved block, now of a file at replication 1: %d replicas trimmed at the next round, want %d", deletes, want)
	}
}

// writeOneBlock makes path a closed file of one block of n bytes at
// replication repl, every replica reported received; it returns the block
// and its holders.
func writeOneBlock(t *testing.T, m *Metad, path string, repl int, n int64) (cairn.Block, []cairn.Node) {
	t.Helper()
	ctx := context.Background()
	if _, err := m.Create(ctx, path, cairn.CreateOptions{Client: "c", Replication: repl, BlockSize: testBlock}); err != nil {
		t.Fatal(err)
	}
	lb, err := m.AddBlock(ctx, cairn.WriterRef{Path: path, Client: "c"}, nil, nil)
	must(t, err)
	b := lb.Block
	b.Len = n
	for _, nd := range lb.Locations {
		must(t, m.BlocksReceived(ctx, nd.StorageID, finalized(b)))
	}
	must(t, m.Complete(ctx, cairn.WriterRef{Path: path, Client: "c"}, &b))
	return b, lb.Locations
}
