package metad

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"cairn"
)

// BenchmarkNamespace measures metad alone, without RPC: create (one
// synced batch each, concurrent creates sharing WAL syncs), stat of one
// of 1,000 files four levels deep, and list of a 100-entry directory,
// with 1, 8 and 64 callers, as an identified non-superuser (so every
// permission check runs). tests/metad_bench_test.go measures the same
// over gRPC.
//
//	go test -run '^$' -bench Namespace -benchtime 3s ./metad/
func BenchmarkNamespace(b *testing.B) {
	m := openCfg(b, Config{})
	ctx := context.Background()
	must(b, m.Mkdirs(ctx, "/bench/stat/d", 0o777))
	must(b, m.Mkdirs(ctx, "/bench/list", 0o777))
	for i := range 1000 {
		must(b, m.Mknod(ctx, fmt.Sprintf("/bench/stat/d/f%04d", i), 0o644, 0))
	}
	for i := range 100 {
		must(b, m.Mknod(ctx, fmt.Sprintf("/bench/list/e%03d", i), 0o644, 0))
	}
	user := as("bench", "users")
	var dirs atomic.Int64
	ops := []struct {
		name string
		op   func(w, n int, dir string) error
	}{
		{"create", func(w, n int, dir string) error {
			_, err := m.Create(user, fmt.Sprintf("%s/w%d-%d", dir, w, n), cairn.CreateOptions{Client: "bench"})
			return err
		}},
		{"stat", func(w, n int, _ string) error {
			_, err := m.Stat(user, fmt.Sprintf("/bench/stat/d/f%04d", (w*7919+n)%1000))
			return err
		}},
		{"list", func(_, _ int, _ string) error {
			_, _, err := m.List(user, "/bench/list", "", 1000)
			return err
		}},
	}
	for _, o := range ops {
		for _, callers := range []int{1, 8, 64} {
			b.Run(fmt.Sprintf("%s/callers=%d", o.name, callers), func(b *testing.B) {
				dir := fmt.Sprintf("/bench/d%d", dirs.Add(1))
				must(b, m.Mkdir(ctx, dir, 0o777))
				var next atomic.Int64
				var wg sync.WaitGroup
				b.ResetTimer()
				for w := range callers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for {
							i := next.Add(1) - 1
							if i >= int64(b.N) {
								return
							}
							if err := o.op(w, int(i), dir); err != nil {
								b.Error(err)
								return
							}
						}
					}()
				}
				wg.Wait()
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
			})
		}
	}
}
