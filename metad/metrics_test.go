package metad

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"cairn"
)

// gather reads m's /metrics registry into "name{label=value,...}" → value
// (a histogram: its sample count), and fails t on any naming problem
// promlint finds.
func gather(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	probs, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range probs {
		if strings.HasPrefix(p.Metric, "cairn_") {
			t.Errorf("promlint: %s: %s", p.Metric, p.Text)
		}
	}
	return flatten(mfs)
}

func flatten(mfs []*dto.MetricFamily) map[string]float64 {
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.Metric {
			var ls []string
			for _, l := range m.Label {
				ls = append(ls, l.GetName()+"="+l.GetValue())
			}
			k := mf.GetName()
			if len(ls) > 0 {
				k += "{" + strings.Join(ls, ",") + "}"
			}
			switch {
			case m.Gauge != nil:
				out[k] = m.Gauge.GetValue()
			case m.Counter != nil:
				out[k] = m.Counter.GetValue()
			case m.Histogram != nil:
				out[k] = float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return out
}

// TestMetricsCluster follows one block through the cluster's gauges: a
// holder dies (under-replicated, a copy queued, then sent), then every
// holder (missing); and RPCs are timed by method and code.
func TestMetricsCluster(t *testing.T) {
	clock := newFakeClock()
	m := openCfg(t, Config{Clock: clock, DeadAfter: time.Minute, Heartbeat: time.Second})
	reg := m.metricsRegistry()
	nodes := registerNodes(t, m, 4)
	ctx := context.Background()
	if _, err := m.Create(ctx, "/f", cairn.CreateOptions{Client: "c", Replication: 3, BlockSize: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	lb, err := m.AddBlock(ctx, cairn.WriterRef{Path: "/f", Client: "c"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	b := lb.Block
	b.Len = 1000
	for _, n := range lb.Locations {
		must(t, m.BlocksReceived(ctx, n.StorageID, finalized(b)))
	}
	must(t, m.Complete(ctx, cairn.WriterRef{Path: "/f", Client: "c"}, &b))
	must(t, m.checkReplication(true))
	want := func(when string, exp map[string]float64) {
		t.Helper()
		got := gather(t, reg)
		for k, v := range exp {
			if got[k] != v {
				t.Errorf("%s: %s = %v, want %v", when, k, got[k], v)
			}
		}
	}
	want("all well", map[string]float64{
		"cairn_metad_blockds{state=live}": 4, "cairn_metad_blockds{state=dead}": 0,
		"cairn_metad_blocks": 1, "cairn_metad_files": 2, // the root and /f
		"cairn_metad_capacity_bytes": 4 << 40, "cairn_metad_safe_mode": 0,
		"cairn_metad_under_replicated_blocks": 0, "cairn_metad_missing_blocks": 0,
		"cairn_metad_replication_rounds_total": 1, "cairn_metad_replication_round_candidates": 1,
	})

	dead := lb.Locations[0].StorageID
	clock.Add(30 * time.Second)
	heartbeatAll(t, m, nodes, dead)
	clock.Add(40 * time.Second)
	heartbeatAll(t, m, nodes, dead)
	must(t, m.checkReplication(false))
	want("a holder dead", map[string]float64{
		"cairn_metad_blockds{state=live}": 3, "cairn_metad_blockds{state=dead}": 1,
		"cairn_metad_under_replicated_blocks": 1, "cairn_metad_replication_queue_blocks{priority=low}": 1,
		"cairn_metad_replication_queue_blocks{priority=highest}": 0,
		"cairn_metad_pending_replications{state=queued}":         1, "cairn_metad_pending_replications{state=sent}": 0,
		"cairn_metad_capacity_bytes": 3 << 40,
	})
	heartbeatAll(t, m, nodes, dead)
	want("the copy handed out", map[string]float64{
		"cairn_metad_pending_replications{state=queued}": 0, "cairn_metad_pending_replications{state=sent}": 1,
	})

	var holders = map[string]bool{}
	for _, n := range lb.Locations {
		holders[n.StorageID] = true
	}
	var other string
	for _, n := range nodes {
		if !holders[n.StorageID] {
			other = n.StorageID
		}
	}
	clock.Add(40 * time.Second)
	heartbeatAll(t, m, []cairn.Node{{StorageID: other}}, "")
	clock.Add(40 * time.Second)
	heartbeatAll(t, m, []cairn.Node{{StorageID: other}}, "")
	must(t, m.checkReplication(false))
	want("every holder dead", map[string]float64{
		"cairn_metad_blockds{state=live}": 1, "cairn_metad_blockds{state=dead}": 3,
		"cairn_metad_missing_blocks": 1, "cairn_metad_under_replicated_blocks": 0,
	})

	// The interceptor: a call that succeeds and one refused.
	info := &grpc.UnaryServerInfo{FullMethod: "/cairn.Namespace/Stat"}
	ok := func(context.Context, any) (any, error) { return nil, nil }
	refused := func(context.Context, any) (any, error) { return nil, status.Error(codes.NotFound, "no") }
	for _, h := range []grpc.UnaryHandler{ok, ok, refused} {
		_, _ = m.stats.observeRPCs(ctx, nil, info, h)
	}
	sinfo := &grpc.StreamServerInfo{FullMethod: "/cairn.Registry/BlockReport"}
	_ = m.stats.observeStreams(nil, nil, sinfo, func(any, grpc.ServerStream) error { return errors.New("cut") })
	want("RPCs", map[string]float64{
		"cairn_metad_rpc_duration_seconds{code=OK,method=Stat}":             2,
		"cairn_metad_rpc_duration_seconds{code=NotFound,method=Stat}":       1,
		"cairn_metad_rpc_duration_seconds{code=Unknown,method=BlockReport}": 1,
		"cairn_metad_rpcs_total{method=Stat}":                               3,
	})
}

// TestMetricsSafeMode: the safe mode gauges while metad waits for reports.
func TestMetricsSafeMode(t *testing.T) {
	m := openCfg(t, Config{})
	m.safe = newSafeMode(1, 0, m.log)
	m.safe.begin([]cairn.BlockID{1, 2}, m.clock.Now())
	got := gather(t, m.metricsRegistry())
	for k, v := range map[string]float64{"cairn_metad_safe_mode": 1, "cairn_metad_safe_mode_needed_blocks": 2, "cairn_metad_safe_mode_reported_blocks": 0} {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	m.safe.reported([]cairn.BlockID{1}, m.clock.Now())
	if got := gather(t, m.metricsRegistry()); got["cairn_metad_safe_mode_reported_blocks"] != 1 {
		t.Errorf("after one report: reported %v, want 1", got["cairn_metad_safe_mode_reported_blocks"])
	}
}
