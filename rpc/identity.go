package rpc

import (
	"context"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"cairn"
)

// Identity travels in gRPC metadata under these keys. On a cluster with a
// CA metad honours them only from a mount or an admin certificate
// (auth.go).
const (
	mdUser   = "cairn-user"
	mdGroups = "cairn-groups"
	// mdDelegation carries a delegation token the call runs by (Auth).
	mdDelegation = "cairn-delegation"
)

// DelegationInterceptor returns a client interceptor that makes every
// call run as the owner of the delegation token tok (empty: none).
func DelegationInterceptor(tok string) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if tok != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, mdDelegation, tok)
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}
}

// delegationOf is the delegation token a call's metadata brings.
func delegationOf(ctx context.Context) (string, bool) {
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok {
		return "", false
	}
	v := md.Get(mdDelegation)
	if len(v) != 1 || v[0] == "" {
		return "", false
	}
	return v[0], true
}

// IdentityInterceptor returns a client interceptor that sends the
// cairn.Identity a call's context carries, or def when it carries none
// (an empty def: none).
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
// identity into the handler's context: an insecure (loopback dev)
// cluster's policy, where every caller is believed.
func ServerIdentity(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if id, ok := assertedIdentity(ctx); ok {
		ctx = cairn.WithIdentity(ctx, id)
	}
	return handler(ctx, req)
}
