package rpc

import (
	"context"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"cairn"
)

// Identity travels in gRPC metadata under these keys.
const (
	mdUser   = "cairn-user"
	mdGroups = "cairn-groups"
)

// IdentityInterceptor returns a client interceptor that sends the
// cairn.Identity a call's context carries, or def when it carries none.
func IdentityInterceptor(def cairn.Identity) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		id, ok := cairn.IdentityFrom(ctx)
		if !ok {
			id = def
		}
		if id.User != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, mdUser, id.User, mdGroups, strings.Join(id.Groups, ","))
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}
}

// ServerIdentity is a server interceptor that puts the caller's asserted
// identity into the handler's context.
func ServerIdentity(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if u := md.Get(mdUser); len(u) == 1 && u[0] != "" {
			id := cairn.Identity{User: u[0]}
			if g := md.Get(mdGroups); len(g) == 1 && g[0] != "" {
				id.Groups = strings.Split(g[0], ",")
			}
			ctx = cairn.WithIdentity(ctx, id)
		}
	}
	return handler(ctx, req)
}
