package client

import (
	"context"
	"path"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// metrics are a client's counters, registered in Options.Metrics when it
// is set (the mount's /metrics); without it nothing is counted.
type metrics struct {
	rpcTime    *prometheus.HistogramVec // by method and gRPC code
	recoveries prometheus.Counter       // write pipelines rebuilt
}

// rpcBuckets are the bounds, in seconds, of the client's RPC histogram: a
// call answered from metad's memory on a LAN to one retried for seconds.
var rpcBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// newMetrics registers a client's metrics in reg; nil reg: none.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	if reg == nil {
		return nil, nil
	}
	m := &metrics{
		rpcTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "cairn_client_rpc_duration_seconds",
			Help:    "Time an RPC to metad took as the client saw it, retries included, by method and gRPC status code.",
			Buckets: rpcBuckets}, []string{"method", "code"}),
		recoveries: prometheus.NewCounter(prometheus.CounterOpts{Name: "cairn_client_pipeline_recoveries_total",
			Help: "Write pipelines rebuilt after a blockd failed or a node was added back (HDFS's pipeline recovery)."}),
	}
	for _, c := range []prometheus.Collector{m.rpcTime, m.recoveries} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// interceptor times every unary call by method and status code.
func (m *metrics) interceptor(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	start := time.Now()
	err := invoker(ctx, method, req, reply, cc, opts...)
	m.rpcTime.WithLabelValues(path.Base(method), status.Code(err).String()).Observe(time.Since(start).Seconds())
	return err
}

// recovered counts one pipeline recovery.
func (m *metrics) recovered() {
	if m != nil {
		m.recoveries.Inc()
	}
}
