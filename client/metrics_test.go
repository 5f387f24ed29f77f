package client

import (
	"context"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestMetrics: the interceptor times calls by method and code, the
// recoveries count, a nil registry keeps nothing, and the names pass
// promlint.
func TestMetrics(t *testing.T) {
	if m, err := newMetrics(nil); m != nil || err != nil {
		t.Fatalf("no registry: %v, %v; want nothing kept", m, err)
	}
	var none *metrics
	none.recovered() // a client without metrics counts nothing, and does not fail

	reg := prometheus.NewRegistry()
	m, err := newMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	ok := func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error { return nil }
	gone := func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
		return status.Error(codes.Unavailable, "down")
	}
	for _, inv := range []grpc.UnaryInvoker{ok, ok, gone} {
		_ = m.interceptor(context.Background(), "/cairn.Namespace/Stat", nil, nil, nil, inv)
	}
	m.recovered()
	if n := testutil.CollectAndCount(m.rpcTime); n != 2 {
		t.Errorf("%d series of RPC times, want 2 (Stat OK, Stat Unavailable)", n)
	}
	if v := testutil.ToFloat64(m.recoveries); v != 1 {
		t.Errorf("recoveries %v, want 1", v)
	}
	probs, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range probs {
		if strings.HasPrefix(p.Metric, "cairn_") {
			t.Errorf("promlint: %s: %s", p.Metric, p.Text)
		}
	}
	// A second client in the same registry is refused, not a panic.
	if _, err := newMetrics(reg); err == nil {
		t.Error("a second client's metrics in the same registry were accepted")
	}
}
