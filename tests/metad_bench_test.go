package tests

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cairn"
	"cairn/client"
	"cairn/tests/cluster"
)

// BenchmarkMetadRPC drives create, stat and list over real gRPC on
// loopback against the real metad process, with 1, 8 and 64 concurrent
// clients (each its own connection), and reports operations per second.
// "renew" is RenewLease, a call metad answers from a map: the ceiling of
// the RPC layer on this machine, measured in the same run; "create" is one
// Create (the file stays open); "create+close" is Create
// then Complete, what making an empty file costs; "stat" stats one of
// 1,000 files three levels deep; "list" lists a directory of 100 entries.
//
//	CAIRN_BIN=bin/cairn go test -run '^$' -bench MetadRPC -benchtime 5s ./tests/
func BenchmarkMetadRPC(b *testing.B) {
	c := cluster.Start(b, cluster.Config{MetadOnly: true})
	ctx := context.Background()
	setup := benchClients(b, c, 1)[0]
	must(b, setup.NS.Mkdirs(ctx, "/bench/stat/d", 0o755))
	must(b, setup.NS.Mkdirs(ctx, "/bench/list", 0o755))
	for i := range 1000 {
		must(b, setup.NS.Mknod(ctx, fmt.Sprintf("/bench/stat/d/f%04d", i), 0o644, 0))
	}
	for i := range 100 {
		must(b, setup.NS.Mknod(ctx, fmt.Sprintf("/bench/list/e%03d", i), 0o644, 0))
	}
	var dirs atomic.Int64
	ops := []struct {
		name string
		op   func(cl *client.Client, worker, n int, dir string) error
	}{
		{"renew", func(cl *client.Client, _, _ int, _ string) error {
			return cl.NS.RenewLease(ctx, cl.Name())
		}},
		{"create", func(cl *client.Client, w, n int, dir string) error {
			_, err := cl.NS.Create(ctx, fmt.Sprintf("%s/w%d-%d", dir, w, n), cairn.CreateOptions{Client: cl.Name()})
			return err
		}},
		{"create+close", func(cl *client.Client, w, n int, dir string) error {
			p := fmt.Sprintf("%s/w%d-%d", dir, w, n)
			if _, err := cl.NS.Create(ctx, p, cairn.CreateOptions{Client: cl.Name()}); err != nil {
				return err
			}
			return cl.NS.Complete(ctx, cairn.WriterRef{Path: p, Client: cl.Name()}, nil)
		}},
		{"stat", func(cl *client.Client, w, n int, _ string) error {
			_, err := cl.NS.Stat(ctx, fmt.Sprintf("/bench/stat/d/f%04d", (w*7919+n)%1000))
			return err
		}},
		{"list", func(cl *client.Client, _, _ int, _ string) error {
			es, _, err := cl.NS.List(ctx, "/bench/list", "", 1000)
			if err == nil && len(es) != 100 {
				err = fmt.Errorf("listed %d entries, want 100", len(es))
			}
			return err
		}},
	}
	for _, o := range ops {
		for _, n := range []int{1, 8, 64} {
			b.Run(fmt.Sprintf("%s/clients=%d", o.name, n), func(b *testing.B) {
				cls := benchClients(b, c, n)
				dir := fmt.Sprintf("/bench/d%d", dirs.Add(1))
				must(b, setup.NS.Mkdir(ctx, dir, 0o755))
				var next atomic.Int64
				var wg sync.WaitGroup
				errs := make(chan error, n)
				cpu := c.MetadCPU(b)
				b.ResetTimer()
				for w, cl := range cls {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for {
							i := next.Add(1) - 1
							if i >= int64(b.N) {
								return
							}
							if err := o.op(cl, w, int(i), dir); err != nil {
								errs <- err
								return
							}
						}
					}()
				}
				wg.Wait()
				b.StopTimer()
				close(errs)
				for err := range errs {
					b.Fatal(err)
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
				// metad's own CPU per call: what a metad whose clients
				// run elsewhere would spend.
				b.ReportMetric(float64((c.MetadCPU(b)-cpu).Microseconds())/float64(b.N), "metad-µs/op")
			})
		}
	}
}

func benchClients(b testing.TB, c *cluster.Cluster, n int) []*client.Client {
	out := make([]*client.Client, n)
	for i := range out {
		out[i] = metadClient(b, c, fmt.Sprintf("bench-%d-%d", n, i), cairn.Identity{})
	}
	return out
}

// BenchmarkMetadManyFiles creates $CAIRN_BENCH_FILES files (opt-in: a
// million takes minutes) with 64 clients, Create then Complete each, in
// directories of 10,000, and reports metad's resident memory at a tenth
// of the files and at all of them and the growth per file between the
// two; how long metad takes to open its store and listen again after a
// SIGKILL right after the writes (replaying the WAL) and after SIGTERM;
// the time of a stat from cold across the namespace; and the store's size.
//
//	CAIRN_BENCH_FILES=1000000 CAIRN_BIN=bin/cairn go test -run '^$' -bench ManyFiles -benchtime 1x -timeout 60m ./tests/
func BenchmarkMetadManyFiles(b *testing.B) {
	total, _ := strconv.Atoi(os.Getenv("CAIRN_BENCH_FILES"))
	if total <= 0 {
		b.Skip("set CAIRN_BENCH_FILES (say 1000000) to run")
	}
	c := cluster.Start(b, cluster.Config{MetadOnly: true})
	ctx := context.Background()
	cls := benchClients(b, c, 64)
	const perDir = 10000
	for d := 0; d*perDir < total; d++ {
		must(b, cls[0].NS.Mkdirs(ctx, fmt.Sprintf("/many/d%04d", d), 0o755))
	}
	create := func(from, to int) time.Duration {
		start := time.Now()
		var next atomic.Int64
		next.Store(int64(from))
		var wg sync.WaitGroup
		for _, cl := range cls {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := int(next.Add(1) - 1)
					if i >= to {
						return
					}
					p := fmt.Sprintf("/many/d%04d/f%05d", i/perDir, i%perDir)
					if _, err := cl.NS.Create(ctx, p, cairn.CreateOptions{Client: cl.Name()}); err != nil {
						b.Error(err)
						return
					}
					if err := cl.NS.Complete(ctx, cairn.WriterRef{Path: p, Client: cl.Name()}, nil); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		return time.Since(start)
	}
	tenth := total / 10
	took := create(0, tenth)
	rss1 := c.MetadRSS(b)
	took += create(tenth, total)
	rss2 := c.MetadRSS(b)
	if b.Failed() {
		return
	}
	// A crash right after the writes: the restart replays the WAL.
	c.KillMetad(b)
	crash := c.RestartMetadTimed(b)
	last := fmt.Sprintf("/many/d%04d/f%05d", (total-1)/perDir, (total-1)%perDir)
	fi, err := cls[0].NS.Stat(ctx, last)
	if err != nil || fi.Writing {
		b.Fatalf("the last file after the crash: %+v, %v", fi, err)
	}
	rss3 := c.MetadRSS(b)
	c.StopMetad(b)
	restart := c.RestartMetadTimed(b)
	// Stat 10,000 files spread over the namespace, from cold.
	start := time.Now()
	for i := range 10000 {
		j := (i * 7919) % total
		if _, err := cls[i%len(cls)].NS.Stat(ctx, fmt.Sprintf("/many/d%04d/f%05d", j/perDir, j%perDir)); err != nil {
			b.Fatal(err)
		}
	}
	coldStat := time.Since(start)
	rss4 := c.MetadRSS(b)
	b.ReportMetric(float64(total)/took.Seconds(), "files/s")
	b.ReportMetric(float64(rss1)/(1<<20), "MiB-rss-at-tenth")
	b.ReportMetric(float64(rss2)/(1<<20), "MiB-rss-at-all")
	b.ReportMetric(float64(rss2-rss1)/float64(total-tenth), "B/file-growth")
	b.ReportMetric(float64(crash.Milliseconds()), "ms-restart-after-kill")
	b.ReportMetric(float64(rss3)/(1<<20), "MiB-rss-after-crash")
	b.ReportMetric(float64(restart.Milliseconds()), "ms-restart")
	b.ReportMetric(float64(coldStat.Microseconds())/10000, "us/cold-stat")
	b.ReportMetric(float64(rss4)/(1<<20), "MiB-rss-after-stats")
	b.ReportMetric(float64(dirSize(b, c.MetadDataDir()))/(1<<20), "MiB-on-disk")
}

// dirSize is the bytes of the files under dir.
func dirSize(b testing.TB, dir string) int64 {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			n += fi.Size()
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return n
}
