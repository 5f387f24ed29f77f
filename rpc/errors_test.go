package rpc

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"cairn"
)

// Every Kind crosses the wire intact: errors.Is works on the caller's side
// as on the server's, and the message keeps the op, path and detail.
func TestErrorKindsCrossTheWire(t *testing.T) {
	for k := cairn.KindNotExist; k <= cairn.KindUnavailable; k++ {
		sent := fmt.Errorf("wrapped: %w", cairn.E("metad.Op", k, "/a/b", "because"))
		got := fromStatus("rpc.Op", toStatus(sent))
		if cairn.KindOf(got) != k || !errors.Is(got, &cairn.Error{Kind: k}) {
			t.Errorf("kind %v came back as %v (%v)", k, cairn.KindOf(got), got)
		}
		var e *cairn.Error
		if !errors.As(got, &e) || e.Op != "metad.Op" || e.Path != "/a/b" || e.Detail != "because" {
			t.Errorf("kind %v: %+v lost its op, path or detail", k, e)
		}
	}
	if got := fromStatus("rpc.Op", toStatus(context.Canceled)); !errors.Is(got, context.Canceled) {
		t.Errorf("context.Canceled came back as %v", got)
	}
	if got := fromStatus("rpc.Op", status.Error(codes.Unavailable, "connection refused")); cairn.KindOf(got) != cairn.KindUnavailable {
		t.Errorf("an unreachable metad gives %v, want KindUnavailable", got)
	}
	if got := fromStatus("rpc.Op", errors.New("not a status")); cairn.KindOf(got) != cairn.KindUnavailable {
		t.Errorf("a transport error gives %v, want KindUnavailable", got)
	}
	if toStatus(nil) != nil || fromStatus("x", nil) != nil {
		t.Error("nil is not nil after the round trip")
	}
}
