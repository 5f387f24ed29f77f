package blockd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"cairn"
	"cairn/checksum"
	"cairn/internal/versionfile"
)

// putReplica writes a finalized replica of block id straight into a data
// directory's layout, as a blockd would have left it.
func putReplica(t testing.TB, dir string, id, gs uint64, data []byte, chunk int) cairn.Block {
	t.Helper()
	leaf := filepath.Join(dir, "current", "finalized", checksum.FinalizedSubdir(id))
	if err := os.MkdirAll(leaf, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(leaf, checksum.BlockFileName(id)), data, 0o644); err != nil {
		t.Fatal(err)
	}
	var meta bytes.Buffer
	w, err := checksum.NewWriter(&meta, checksum.NewHeader(id, gs, chunk))
	if err != nil {
		t.Fatal(err)
	}
	_, _ = w.Write(data)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(leaf, checksum.MetaFileName(id, gs)), meta.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return cairn.Block{ID: cairn.BlockID(id), GenStamp: cairn.GenStamp(gs), Len: int64(len(data))}
}

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*7+i/251)
	}
	return b
}

func openVolumes(t testing.TB, dirs []string, opts VolumeOptions) *Volumes {
	t.Helper()
	vs, err := OpenVolumes(dirs, opts)
	if err != nil {
		t.Fatalf("OpenVolumes(%v): %v", dirs, err)
	}
	t.Cleanup(vs.Close)
	return vs
}

func readVersion(t testing.TB, dir string) map[string]string {
	t.Helper()
	v, err := versionfile.Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestVolumesShareOneIdentity(t *testing.T) {
	a, b, c := t.TempDir(), t.TempDir(), t.TempDir()
	vs := openVolumes(t, []string{a, b}, VolumeOptions{})
	id := vs.StorageID()
	if !strings.HasPrefix(id, "DS-") {
		t.Fatalf("storage ID %q", id)
	}
	if err := vs.SetNamespaceID("ns-1"); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{a, b} {
		if v := readVersion(t, d); v["storageID"] != id || v["namespaceID"] != "ns-1" {
			t.Errorf("%s VERSION = %v, want storageID %s namespaceID ns-1", d, v, id)
		}
	}
	vs.Close()

	// A new directory joins, even listed first: it takes the identity the
	// others have.
	vs = openVolumes(t, []string{c, a, b}, VolumeOptions{})
	if vs.StorageID() != id || vs.NamespaceID() != "ns-1" {
		t.Errorf("reopened with a new directory: storage ID %s namespace %s, want %s ns-1", vs.StorageID(), vs.NamespaceID(), id)
	}
	if v := readVersion(t, c); v["storageID"] != id || v["namespaceID"] != "ns-1" {
		t.Errorf("new directory's VERSION = %v", v)
	}
	vs.Close()

	// A directory of another blockd is refused, and nothing changes.
	other := t.TempDir()
	ovs := openVolumes(t, []string{other}, VolumeOptions{})
	oid := ovs.StorageID()
	ovs.Close()
	_, err := OpenVolumes([]string{a, other}, VolumeOptions{})
	if err == nil || !strings.Contains(err.Error(), "different blockds") || !strings.Contains(err.Error(), other) {
		t.Errorf("directories of two blockds: err = %v, want one naming both storage IDs", err)
	}
	if v := readVersion(t, other); v["storageID"] != oid {
		t.Errorf("refused directory's VERSION changed: %v", v)
	}

	// So is one of another namespace.
	if err := versionfile.Write(other, map[string]string{"storageID": id, "namespaceID": "ns-2", "layoutVersion": "1", "storageType": "BLOCKD"}); err != nil {
		t.Fatal(err)
	}
	_, err = OpenVolumes([]string{a, other}, VolumeOptions{})
	if cairn.KindOf(err) != cairn.KindNamespace || !strings.Contains(err.Error(), "ns-2") {
		t.Errorf("directories of two namespaces: err = %v, want a namespace error naming ns-2", err)
	}
}

func TestOpenVolumesRefusesBadInput(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	for _, tc := range []struct {
		name string
		dirs []string
		opts VolumeOptions
		want string
	}{
		{"none", nil, VolumeOptions{}, "no data directory"},
		{"twice", []string{a, b, a + "/"}, VolumeOptions{}, "given twice"},
		{"tolerate all", []string{a, b}, VolumeOptions{FailedTolerated: 2}, "must be 0..1"},
		{"tolerate negative", []string{a}, VolumeOptions{FailedTolerated: -1}, "must be 0..0"},
		{"negative reserve", []string{a}, VolumeOptions{Reserved: -1}, "negative"},
	} {
		_, err := OpenVolumes(tc.dirs, tc.opts)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
	if _, err := os.Stat(filepath.Join(a, versionfile.Name)); err == nil {
		t.Errorf("a refused OpenVolumes wrote %s", filepath.Join(a, versionfile.Name))
	}

	vs := openVolumes(t, []string{a}, VolumeOptions{})
	_, err := OpenVolumes([]string{b, a}, VolumeOptions{FailedTolerated: 1})
	if err == nil || !strings.Contains(err.Error(), "in use by another blockd") {
		t.Errorf("a directory in use: err = %v, want it refused even with a failure tolerated", err)
	}
	vs.Close()
	// b was opened and released by the refused call; it can be used.
	openVolumes(t, []string{b}, VolumeOptions{})
}

// setFree replaces the volumes' statfs with fixed free bytes per directory.
func setFree(vs *Volumes, free map[string]int64) {
	vs.free = func(s *Store) int64 { return free[s.dir] }
}

func TestVolumesPlaceNewReplicasByFreeSpace(t *testing.T) {
	a, b, c := t.TempDir(), t.TempDir(), t.TempDir()
	vs := openVolumes(t, []string{a, b, c}, VolumeOptions{Reserved: 1000})
	free := map[string]int64{a: 5000, b: 9000, c: 7000}
	setFree(vs, free)

	place := func(id cairn.BlockID) string {
		t.Helper()
		w, err := vs.Create(cairn.Block{ID: id, GenStamp: 1}, 512)
		if err != nil {
			t.Fatalf("Create %d: %v", id, err)
		}
		defer w.Abort()
		v := vs.holder(id)
		if v == nil {
			t.Fatalf("no volume holds block %d being written", id)
		}
		if _, err := os.Stat(filepath.Join(v.dir, "current", "rbw", checksum.BlockFileName(uint64(id)))); err != nil {
			t.Errorf("block %d: %v", id, err)
		}
		return v.dir
	}
	if got := place(1); got != b {
		t.Errorf("free a=5000 b=9000 c=7000: placed on %s, want b %s", got, b)
	}
	free[b] = 1000 // at the reserve: takes nothing
	if got := place(2); got != c {
		t.Errorf("b at its reserve: placed on %s, want c %s", got, c)
	}
	free[c] = 900 // below the reserve
	if got := place(3); got != a {
		t.Errorf("b and c at or below the reserve: placed on %s, want a %s", got, a)
	}
	free[a] = 1000
	_, err := vs.Create(cairn.Block{ID: 4, GenStamp: 1}, 512)
	if !errors.Is(err, cairn.ErrNoSpace) || !strings.Contains(err.Error(), "reserved 1000 bytes") {
		t.Errorf("every disk at its reserve: err = %v, want KindNoSpace naming the reserve", err)
	}
	for _, d := range []string{a, b, c} {
		if ents, _ := os.ReadDir(filepath.Join(d, "current", "rbw")); len(ents) != 0 {
			t.Errorf("%s/current/rbw holds %d files after a refused or aborted create", d, len(ents))
		}
	}

	// A block held by one volume is never created on another: a second
	// writer at the same stamp is refused, and a copy at a newer stamp
	// replaces the replica where it is.
	free[a], free[b] = 9000, 100000
	w, err := vs.Create(cairn.Block{ID: 5, GenStamp: 1}, 512)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	free[b], free[c] = 0, 100000
	if _, err := vs.Create(cairn.Block{ID: 5, GenStamp: 1}, 512); !errors.Is(err, cairn.ErrExist) {
		t.Errorf("create of a block being written at the same stamp: err = %v, want ErrExist", err)
	}
	w2, err := vs.Create(cairn.Block{ID: 5, GenStamp: 2}, 512)
	if err != nil {
		t.Fatalf("a newer replica over an older one being written: %v", err)
	}
	defer w2.Abort()
	if v := vs.holder(5); v == nil || v.dir != b {
		t.Errorf("the newer replica is not on the volume of the one it replaced (%s)", b)
	}
	if err := w.Write(0, []byte("x"), checksumsAt(0, []byte("x"), 512)); !errors.Is(err, errPreempted) {
		t.Errorf("the replaced replica's writer: %v, want it preempted", err)
	}
}

func TestVolumesRouteByBlock(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	ra := putReplica(t, a, 1<<30+1, 1001, pattern(3000, 1), 512)
	rb := putReplica(t, b, 1<<30+2, 1002, pattern(1500, 2), 512)
	vs := openVolumes(t, []string{a, b}, VolumeOptions{})

	for _, r := range []struct {
		b   cairn.Block
		dir string
	}{{ra, a}, {rb, b}} {
		got, ok := vs.Lookup(r.b.ID)
		if !ok || got != r.b {
			t.Errorf("Lookup(%d) = %v, %v; want %v", r.b.ID, got, ok, r.b)
		}
		if p := vs.BlockPath(r.b); !strings.HasPrefix(p, r.dir+string(filepath.Separator)) {
			t.Errorf("BlockPath(%v) = %s, want under %s", r.b, p, r.dir)
		}
		if p := vs.MetaPath(r.b); !strings.HasPrefix(p, r.dir+string(filepath.Separator)) {
			t.Errorf("MetaPath(%v) = %s, want under %s", r.b, p, r.dir)
		}
		have, data, meta, err := vs.OpenReplica(r.b)
		if err != nil {
			t.Errorf("OpenReplica(%v): %v", r.b, err)
			continue
		}
		if err := checksum.VerifyFile(data, have.Len, meta); err != nil {
			t.Errorf("replica %v: %v", r.b, err)
		}
		data.Close()
		meta.Close()
	}
	if _, _, _, err := vs.OpenReplica(cairn.Block{ID: 77, GenStamp: 1}); !errors.Is(err, cairn.ErrNotExist) {
		t.Errorf("OpenReplica of an unknown block: %v, want ErrNotExist", err)
	}
	report := vs.Report()
	slices.SortFunc(report, func(x, y cairn.Replica) int { return int(x.ID - y.ID) })
	if want := []cairn.Replica{{Block: ra, State: cairn.ReplicaFinalized}, {Block: rb, State: cairn.ReplicaFinalized}}; !slices.Equal(report, want) {
		t.Errorf("Report = %v, want %v", report, want)
	}
	if err := vs.Delete(rb); err != nil {
		t.Fatal(err)
	}
	if _, ok := vs.Lookup(rb.ID); ok {
		t.Errorf("block %d still there after Delete", rb.ID)
	}
	if _, err := os.Stat(filepath.Join(b, "current", "finalized", checksum.FinalizedSubdir(uint64(rb.ID)), checksum.BlockFileName(uint64(rb.ID)))); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("deleted replica's block file: %v", err)
	}
	if _, ok := vs.Lookup(ra.ID); !ok {
		t.Errorf("Delete of %v removed %v too", rb, ra)
	}
}

func TestVolumesTakeAFailedDiskOutOfService(t *testing.T) {
	a, b, c := t.TempDir(), t.TempDir(), t.TempDir()
	ra := putReplica(t, a, 1<<30+1, 1001, pattern(2000, 1), 512)
	rb := putReplica(t, b, 1<<30+2, 1002, pattern(2000, 2), 512)
	vs := openVolumes(t, []string{a, b, c}, VolumeOptions{FailedTolerated: 1})
	var mu sync.Mutex
	lost := map[string][]cairn.Block{}
	vs.SetFailureHandler(func(dir string, blocks []cairn.Block) {
		mu.Lock()
		lost[dir] = append(lost[dir], blocks...)
		mu.Unlock()
	})
	vs.CheckAll()
	if len(vs.Failed()) != 0 {
		t.Fatalf("healthy volumes failed: %v", vs.Failed())
	}

	// b vanishes: its VERSION and data are gone.
	if err := os.RemoveAll(b); err != nil {
		t.Fatal(err)
	}
	vs.CheckAll()
	if f := vs.Failed(); len(f) != 1 || !strings.Contains(f[0], b) || !strings.Contains(f[0], "VERSION vanished") {
		t.Errorf("Failed() = %v, want %s with VERSION vanished", f, b)
	}
	if got := lost[b]; !slices.Equal(got, []cairn.Block{rb}) {
		t.Errorf("replicas reported lost with %s: %v, want %v", b, got, rb)
	}
	if _, ok := vs.Lookup(rb.ID); ok {
		t.Errorf("block %d of the failed volume is still offered", rb.ID)
	}
	if _, ok := vs.Lookup(ra.ID); !ok {
		t.Errorf("block %d of a good volume is no longer offered", ra.ID)
	}
	if got := vs.Dirs(); !slices.Equal(got, []string{a, c}) {
		t.Errorf("Dirs() = %v, want %v", got, []string{a, c})
	}
	select {
	case err := <-vs.Fatal():
		t.Fatalf("one failed volume of one tolerated is fatal: %v", err)
	default:
	}
	setFree(vs, map[string]int64{a: 10, b: 1 << 40, c: 20})
	w, err := vs.Create(cairn.Block{ID: 9, GenStamp: 1}, 512)
	if err != nil {
		t.Fatalf("Create with a failed volume: %v", err)
	}
	if v := vs.holder(9); v == nil || v.dir != c {
		t.Errorf("new replica not on the good volume with most space %s", c)
	}
	w.Abort()

	// A second failure is one more than tolerated.
	if err := os.WriteFile(filepath.Join(c, versionfile.Name), []byte("storageID=DS-someoneelse\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	vs.CheckAll()
	select {
	case err := <-vs.Fatal():
		if !strings.Contains(err.Error(), "2 of 3 data directories failed") || !strings.Contains(err.Error(), "DS-someoneelse") {
			t.Errorf("fatal error %q does not say what failed", err)
		}
	default:
		t.Fatalf("two failed volumes with one tolerated: no fatal error")
	}
}

func TestVolumesFailedAtStart(t *testing.T) {
	a := t.TempDir()
	bad := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(bad, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// A data directory that is a file cannot be made: a disk failure.
	if _, err := OpenVolumes([]string{a, bad}, VolumeOptions{}); err == nil || !strings.Contains(err.Error(), "1 of 2 data directories failed") {
		t.Errorf("a failed directory with none tolerated: err = %v", err)
	}
	vs := openVolumes(t, []string{a, bad}, VolumeOptions{FailedTolerated: 1})
	if got := vs.Dirs(); !slices.Equal(got, []string{a}) || len(vs.Failed()) != 1 {
		t.Errorf("Dirs() = %v, Failed() = %v", got, vs.Failed())
	}
	id := vs.StorageID()
	vs.Close()

	// A start refused for a failed directory leaves a new one it opened
	// with the blockd's identity, so the next start with it succeeds.
	fresh := t.TempDir()
	if _, err := OpenVolumes([]string{a, fresh, bad}, VolumeOptions{}); err == nil {
		t.Fatal("a failed directory with none tolerated: no error")
	}
	vs = openVolumes(t, []string{a, fresh}, VolumeOptions{})
	if vs.StorageID() != id || readVersion(t, fresh)["storageID"] != id {
		t.Errorf("after a refused start: storage ID %s, %s has %v; want %s", vs.StorageID(), fresh, readVersion(t, fresh), id)
	}
}

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "1048576": 1 << 20, "64K": 64 << 10, "1M": 1 << 20, "1MiB": 1 << 20, "10G": 10 << 30, "2tb": 2 << 40, "512B": 512} {
		if got, err := parseBytes(in); err != nil || got != want {
			t.Errorf("parseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "1X", "M", "99999999999T", "1.5G"} {
		if got, err := parseBytes(in); err == nil {
			t.Errorf("parseBytes(%q) = %d, want an error", in, got)
		}
	}
	if _, err := splitDirs("a,,b"); err == nil {
		t.Errorf("splitDirs(a,,b): no error")
	}
	if got, _ := splitDirs("a, b"); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("splitDirs(a, b) = %v", got)
	}
}

func TestDiskErrorChecksTheVolumesNow(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	rb := putReplica(t, b, 1<<30+2, 1002, pattern(100, 2), 512)
	vs := openVolumes(t, []string{a, b}, VolumeOptions{FailedTolerated: 1})
	failed := make(chan string, 2)
	vs.SetFailureHandler(func(dir string, _ []cairn.Block) { failed <- dir })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		vs.Run(ctx, time.Hour) // no periodic check within the test
	}()
	defer func() {
		cancel()
		<-done
	}()
	if err := os.Remove(filepath.Join(b, versionfile.Name)); err != nil {
		t.Fatal(err)
	}
	d := &Blockd{store: vs}
	d.diskError(rb, syscall.ENOSPC) // a full disk is no reason to check
	d.diskError(rb, fmt.Errorf("read: %w", syscall.EIO))
	select {
	case dir := <-failed:
		if dir != b {
			t.Errorf("failed volume %s, want %s", dir, b)
		}
	case <-time.After(time.Minute):
		t.Fatal("an I/O error did not get the volumes checked")
	}
}
