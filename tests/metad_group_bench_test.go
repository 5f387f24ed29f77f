package tests

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cairn"
	"cairn/client"
	"cairn/tests/cluster"
)

// BenchmarkMetadGroup measures creates (closed, empty files: one
// mutation each) and stats per second against a single metad and
// against a group of three (metad --peers, on this machine's loopback),
// in one run, and reports the group's share of the single metad's rate.
// Each op runs $n times (default 2000) per number of clients.
//
//	CAIRN_BIN=bin/cairn go test -run '^$' -bench MetadGroup -benchtime 1x ./tests/
func BenchmarkMetadGroup(b *testing.B) {
	n := envInt(b, "CAIRN_BENCH_GROUP_OPS", 2000)
	single := cluster.Start(b, cluster.Config{MetadOnly: true})
	group := cluster.StartGroup(b, cluster.GroupConfig{})
	group.WaitLeader(b, -1, 30*time.Second)
	ctx := context.Background()
	targets := []struct {
		name  string
		addr  string
		creds func() *client.Options
	}{
		{"single", single.MetadAddr(), func() *client.Options { return &client.Options{Creds: single.ClientCreds()} }},
		{"group3", group.Members(), func() *client.Options { return &client.Options{Creds: group.ClientCreds()} }},
	}
	for _, clients := range []int{1, 16, 64} {
		rates := map[string]map[string]float64{}
		for _, tg := range targets {
			cls := make([]*client.Client, clients)
			for i := range cls {
				o := tg.creds()
				o.Name = fmt.Sprintf("bench-%s-%d", tg.name, i)
				cl, err := client.Dial(tg.addr, *o)
				if err != nil {
					b.Fatal(err)
				}
				defer cl.Close()
				cls[i] = cl
			}
			dir := fmt.Sprintf("/g%d", clients)
			must(b, cls[0].NS.Mkdirs(ctx, dir, 0o755))
			rates[tg.name] = map[string]float64{}
			for _, op := range []string{"create", "stat"} {
				var next atomic.Int64
				var wg sync.WaitGroup
				errs := make(chan error, clients)
				start := time.Now()
				for w, cl := range cls {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for {
							i := next.Add(1) - 1
							if i >= int64(n) {
								return
							}
							p := fmt.Sprintf("%s/f%d", dir, i)
							var err error
							if op == "create" {
								_, err = cl.NS.Create(ctx, p, cairn.CreateOptions{Perm: 0o644, Client: cl.Name(), Closed: true})
							} else {
								_, err = cl.NS.Stat(ctx, p)
							}
							if err != nil {
								errs <- fmt.Errorf("%s %s by client %d: %w", op, p, w, err)
								return
							}
						}
					}()
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					b.Fatal(err)
				}
				rates[tg.name][op] = float64(n) / time.Since(start).Seconds()
			}
		}
		for _, op := range []string{"create", "stat"} {
			s, g := rates["single"][op], rates["group3"][op]
			b.Logf("%s, %d clients: single metad %.0f/s, group of 3 %.0f/s, ratio %.2f", op, clients, s, g, g/s)
			b.ReportMetric(g/s, fmt.Sprintf("%s-c%d-ratio", op, clients))
		}
	}
}
