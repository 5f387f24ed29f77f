package metad

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"cairn"
)

// storeBytes is the size of the Pebble files under dir (the namespace
// store, not the certificates beside it), and a listing of them.
func storeBytes(t testing.TB, dir string) (int64, string) {
	t.Helper()
	var n int64
	var list string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		n += fi.Size()
		list += fmt.Sprintf("  %s %d\n", d.Name(), fi.Size())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n, list
}

// churnFiles creates files, each with four 32 KiB extended attributes,
// and deletes them, files times, leaving the namespace as it found it.
func churnFiles(t testing.TB, m *Metad, files int) {
	ctx := context.Background()
	must(t, m.Mkdirs(ctx, "/churn", 0o777))
	val := bytes.Repeat([]byte{'v'}, 32<<10)
	for i := range files {
		p := fmt.Sprintf("/churn/f%07d", i)
		_, err := m.Create(ctx, p, cairn.CreateOptions{Client: "c"})
		must(t, err)
		for k := range 4 {
			must(t, m.SetXattr(ctx, p, fmt.Sprintf("user.a%d", k), val, 0))
		}
		must(t, m.Complete(ctx, cairn.WriterRef{Path: p, Client: "c"}, nil))
		must(t, m.Delete(ctx, p, false))
	}
	must(t, m.Delete(ctx, "/churn", false))
}

// churnBound is what the store may take after churn over a namespace of
// live bytes of tables: the WAL behind one flush and the WAL files Pebble
// keeps to reuse (storegc.go), each at most a little over walFlushBytes,
// the tables twice over (before a compaction drops what they replace),
// and the small files (MANIFEST, OPTIONS).
func churnBound(live int64) int64 { return 4*(walFlushBytes+walFlushBytes/4+64<<10) + 2*live + 256<<10 }

// TestStoreStaysBoundedUnderChurn: after creating and deleting 25 MiB
// worth of files and attributes, the namespace empty again, the store's
// files take no more than churnBound of the (empty) namespace. Before
// metad flushed the memtable itself, every WAL file stayed until 16 MiB
// of memtables had piled up: this churn left 18 MB behind.
func TestStoreStaysBoundedUnderChurn(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "meta")
	m := openCfg(t, Config{Dir: dir})
	churnFiles(t, m, 200)
	size, list := storeBytes(t, dir)
	bound := churnBound(64 << 10)
	t.Logf("store after churn: %d bytes (bound %d)\n%s", size, bound, list)
	if size > bound {
		t.Fatalf("the store takes %d bytes after churn that left the namespace empty, over %d:\n%s", size, bound, list)
	}
}

// BenchmarkStoreChurn creates and deletes CAIRN_CHURN_FILES files (2,000
// by default) of four 32 KiB attributes each and reports the store's size
// at the end, the namespace empty again:
//
//	CAIRN_CHURN_FILES=20000 go test -run '^$' -bench StoreChurn -benchtime 1x ./metad/
func BenchmarkStoreChurn(b *testing.B) {
	files := 2000
	if n, err := strconv.Atoi(os.Getenv("CAIRN_CHURN_FILES")); err == nil && n > 0 {
		files = n
	}
	for range b.N {
		dir := filepath.Join(b.TempDir(), "meta")
		m := openCfg(b, Config{Dir: dir})
		churnFiles(b, m, files)
		size, _ := storeBytes(b, dir)
		b.ReportMetric(float64(size), "store-bytes")
		b.ReportMetric(float64(files*4*32<<10), "bytes-churned")
		must(b, m.Close())
	}
}
