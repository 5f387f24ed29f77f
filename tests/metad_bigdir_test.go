package tests

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"

	"cairn"
	"cairn/tests/cluster"
)

// bigDirEntries is the size of the directory TestMetadHugeDirectory lists.
const bigDirEntries = 100_000

// TestMetadHugeDirectory fills one directory with 100,000 entries (empty
// files made by mknod, one mutation each, from 16 clients), then lists it
// over RPC in pages of 1,000, each page holding at most what was asked,
// in order, resuming after the last name; then through the mount with
// `ls | wc -l`; and counts it with ContentSummary. metad serves each page
// with a bounded iterator; its resident memory before and after the
// listings is logged.
func TestMetadHugeDirectory(t *testing.T) {
	RequireFUSE(t)
	c := cluster.Start(t, cluster.Config{Blockds: 1, Replication: 1})
	ctx := context.Background()
	cl := metadClient(t, c, "filler", cairn.Identity{})
	must(t, cl.NS.Mkdir(ctx, "/big", 0o755))
	const workers = 16
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < bigDirEntries; i += workers {
				if err := cl.NS.Mknod(ctx, fmt.Sprintf("/big/e%06d", i), 0o644, 0); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	rssBefore := c.MetadRSS(t)

	t.Run("RPC", func(t *testing.T) {
		const page = 1000
		after, seen, pages := "", 0, 0
		for {
			es, more, err := cl.NS.List(ctx, "/big", after, page)
			must(t, err)
			pages++
			if len(es) > page {
				t.Fatalf("page %d holds %d entries, more than the %d asked for", pages, len(es), page)
			}
			for _, e := range es {
				if want := fmt.Sprintf("e%06d", seen); e.Name != want {
					t.Fatalf("entry %d is %s, want %s", seen, e.Name, want)
				}
				seen++
			}
			if !more {
				break
			}
			after = es[len(es)-1].Name
		}
		if seen != bigDirEntries || pages != bigDirEntries/page {
			t.Errorf("listed %d entries in %d pages, want %d in %d", seen, pages, bigDirEntries, bigDirEntries/page)
		}
		// No limit asks for the largest page metad serves.
		es, more, err := cl.NS.List(ctx, "/big", "", 0)
		must(t, err)
		if len(es) != 10000 || !more {
			t.Errorf("List without limit: %d entries, more %v; want metad's page of 10000 and more", len(es), more)
		}
	})

	t.Run("Mount", func(t *testing.T) {
		mnt := c.Mount(t)
		out := cluster.Exec(t, "sh", "-c", "ls "+mnt+"/big | wc -l")
		if n, err := strconv.Atoi(strings.TrimSpace(out.Stdout)); err != nil || n != bigDirEntries || out.Code != 0 {
			t.Errorf("ls | wc -l through the mount: %q (exit %d, %s), want %d", out.Stdout, out.Code, out.Stderr, bigDirEntries)
		}
	})

	t.Run("ContentSummary", func(t *testing.T) {
		cs, err := cl.NS.ContentSummary(ctx, "/big")
		must(t, err)
		if cs.Files != bigDirEntries || cs.Dirs != 1 {
			t.Errorf("ContentSummary(/big) = %+v, want %d files and 1 directory", cs, bigDirEntries)
		}
	})
	t.Logf("metad resident memory: %d MiB before listing, %d MiB after", rssBefore>>20, c.MetadRSS(t)>>20)
}
