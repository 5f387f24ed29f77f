package rpc

import (
	"context"
	"sync"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"

	"cairn"
)

// SafeModeLogger returns a client interceptor that logs, at WARN and at
// most once every interval, that metad refused a call because it is in
// safe mode, with metad's reason: a program on a mount sees only EROFS,
// and the mount's log says why.
func SafeModeLogger(log *zap.Logger, interval time.Duration) grpc.UnaryClientInterceptor {
	var mu sync.Mutex
	var last time.Time
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		err := invoker(ctx, method, req, reply, cc, opts...)
		if err == nil {
			return nil
		}
		if e := fromStatus(method, err); cairn.KindOf(e) == cairn.KindSafeMode {
			mu.Lock()
			now := time.Now()
			quiet := now.Sub(last) < interval
			if !quiet {
				last = now
			}
			mu.Unlock()
			if !quiet {
				log.Warn("metad is in safe mode (read-only): calls that change the namespace fail with EROFS until it leaves",
					zap.String("call", method), zap.Error(e))
			}
		}
		return err
	}
}
