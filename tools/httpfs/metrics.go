package httpfs

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the gateway's Prometheus metrics.
type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	in, out  prometheus.Counter
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cairn_httpfs_requests_total",
			Help: "WebHDFS requests answered, by operation and HTTP status."}, []string{"op", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "cairn_httpfs_request_duration_seconds",
			Help: "Time to answer a WebHDFS request, bytes included, by operation.", Buckets: prometheus.ExponentialBuckets(0.001, 4, 10)}, []string{"op"}),
		in: prometheus.NewCounter(prometheus.CounterOpts{Name: "cairn_httpfs_received_bytes_total",
			Help: "Bytes of request bodies read (CREATE, APPEND)."}),
		out: prometheus.NewCounter(prometheus.CounterOpts{Name: "cairn_httpfs_sent_bytes_total",
			Help: "Bytes of answers written (OPEN, JSON)."}),
	}
	m.reg.MustRegister(m.requests, m.latency, m.in, m.out, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// observe is webhdfs.Handler's Observe.
func (m *metrics) observe(op string, status int, in, out int64, took time.Duration) {
	if op == "" {
		op = "INVALID"
	}
	m.requests.WithLabelValues(op, strconv.Itoa(status)).Inc()
	m.latency.WithLabelValues(op).Observe(took.Seconds())
	m.in.Add(float64(in))
	m.out.Add(float64(out))
}

func (m *metrics) handler() http.Handler { return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}) }
