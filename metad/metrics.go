package metad

import (
	"context"
	"fmt"
	"net/http"
	"path"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// stats counts what metad's work costs, for operators and for tests that
// check a client's calls cost what they should: how many mutations were
// applied, how many of them waited for a WAL sync (concurrent ones may
// share one: group commit), and how many RPCs of each method came in.
type stats struct {
	mutations atomic.Int64
	walSyncs  atomic.Int64
	// readBarriers: reads a group's leader confirmed through the log
	// after a stall (readconfirm.go).
	readBarriers atomic.Int64

	mu   sync.Mutex
	rpcs map[string]*atomic.Int64 // by method name, e.g. "Create"

	once    sync.Once
	rpcTime *prometheus.HistogramVec // by method and gRPC code
}

// RPCBuckets are the bounds, in seconds, of the RPC latency histograms:
// from a lookup served from memory (tens of microseconds) to a call that
// waits seconds on a WAL sync or a lock.
var RPCBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// histogram is the RPC latency histogram, made at its first use.
func (s *stats) histogram() *prometheus.HistogramVec {
	s.once.Do(func() {
		s.rpcTime = prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "cairn_metad_rpc_duration_seconds",
			Help:    "Time metad took to serve an RPC, by method and gRPC status code (a stream: its whole life).",
			Buckets: RPCBuckets,
		}, []string{"method", "code"})
	})
	return s.rpcTime
}

// rpc counts one call of method.
func (s *stats) rpc(method string) {
	s.mu.Lock()
	c := s.rpcs[method]
	if c == nil {
		if s.rpcs == nil {
			s.rpcs = map[string]*atomic.Int64{}
		}
		c = &atomic.Int64{}
		s.rpcs[method] = c
	}
	s.mu.Unlock()
	c.Add(1)
}

// observeRPCs is a gRPC interceptor that counts and times every call by
// method, and by the status code it ended with. It comes first in the
// chain, so a call refused by authentication or safe mode counts too.
func (s *stats) observeRPCs(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := h(ctx, req)
	s.observe(info.FullMethod, err, time.Since(start))
	return resp, err
}

// observeStreams is observeRPCs for streaming calls.
func (s *stats) observeStreams(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	start := time.Now()
	err := h(srv, ss)
	s.observe(info.FullMethod, err, time.Since(start))
	return err
}

func (s *stats) observe(fullMethod string, err error, d time.Duration) {
	m := path.Base(fullMethod)
	s.rpc(m)
	s.histogram().WithLabelValues(m, status.Code(err).String()).Observe(d.Seconds())
}

// Describe and Collect make stats a prometheus.Collector: the counters are
// read when /metrics is asked for, so counting stays an atomic add.
func (s *stats) Describe(ch chan<- *prometheus.Desc) {
	ch <- descMutations
	ch <- descWALSyncs
	ch <- descReadBarriers
	ch <- descRPCs
	ch <- descHeapLive
	ch <- descHeapObjects
	s.histogram().Describe(ch)
}

func (s *stats) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(descMutations, prometheus.CounterValue, float64(s.mutations.Load()))
	ch <- prometheus.MustNewConstMetric(descWALSyncs, prometheus.CounterValue, float64(s.walSyncs.Load()))
	ch <- prometheus.MustNewConstMetric(descReadBarriers, prometheus.CounterValue, float64(s.readBarriers.Load()))
	s.histogram().Collect(ch)
	s.mu.Lock()
	defer s.mu.Unlock()
	for m, c := range s.rpcs {
		ch <- prometheus.MustNewConstMetric(descRPCs, prometheus.CounterValue, float64(c.Load()), m)
	}
	// Go's heap (the block map lives there; Pebble's cache and memtables
	// do not): live as of the last collection, and in use now, garbage
	// included.
	ms := []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(ms)
	for i, d := range []*prometheus.Desc{descHeapLive, descHeapObjects} {
		if ms[i].Value.Kind() == metrics.KindUint64 {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(ms[i].Value.Uint64()))
		}
	}
}

var (
	descMutations    = prometheus.NewDesc("cairn_metad_mutations_total", "Namespace mutations applied.", nil, nil)
	descReadBarriers = prometheus.NewDesc("cairn_metad_read_barriers_total", "Reads a group's leader confirmed through the Raft log, not a heartbeat round, because its process had stood still.", nil, nil)
	descWALSyncs     = prometheus.NewDesc("cairn_metad_wal_syncs_total", "Mutations that waited for a WAL sync (concurrent ones may share one).", nil, nil)
	descRPCs         = prometheus.NewDesc("cairn_metad_rpcs_total", "RPCs received, by method.", []string{"method"}, nil)

	descHeapLive    = prometheus.NewDesc("cairn_metad_go_heap_live_bytes", "Go heap live as of the last collection (the block map lives there; Pebble's cache does not).", nil, nil)
	descHeapObjects = prometheus.NewDesc("cairn_metad_go_heap_objects_bytes", "Go heap in use now, garbage included.", nil, nil)
)

// metricsHandler serves /metrics in Prometheus's text format: metad's
// counters, the cluster's state as metad sees it, and the Go runtime's and
// the process's, from a registry of this metad's own.
func (m *Metad) metricsHandler() http.Handler {
	return promhttp.HandlerFor(m.metricsRegistry(), promhttp.HandlerOpts{ErrorLog: zapErrorLog{m.log}})
}

// metricsRegistry is every collector metad serves at /metrics.
func (m *Metad) metricsRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(&m.stats, clusterCollector{m}, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// zapErrorLog logs promhttp's errors (a collector that failed) through zap.
type zapErrorLog struct{ log *zap.Logger }

func (l zapErrorLog) Println(v ...any) { l.log.Warn("metrics", zap.String("error", fmt.Sprint(v...))) }
