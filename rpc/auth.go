package rpc

import (
	"context"
	"crypto/x509"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"cairn"
	"cairn/rpc/pb"
	"cairn/trust"
)

// Who may call what, on a cluster with a CA. The caller is the peer its
// verified TLS certificate names (trust.Peer), never what it asserts:
//
//   - Registry RPCs: a blockd, for the storage ID its certificate names.
//   - Namespace RPCs: a mount, a user or an admin. Report, Checkpoint,
//     SetNodeAdmin, RefreshNodes and Balance,
//     and Trust's IssueJoinToken and IssueUILink: an admin only.
//   - Trust's Join and JoinMetad: anyone: the join token in the request
//     authenticates it.
//     RenewCert: any certificate, for its own peer. DataTransfer and
//     ServerDefaults: any certificate. IssueUILink: an admin only.
//
// The identity a Namespace call runs as: a user certificate is that user
// (its groups from metad's host); it may not speak for anyone else. A
// mount certificate speaks for the local users of its host, as NFS trusts
// a host: the cairn-user and cairn-groups metadata it sends are honoured,
// and only from a mount or an admin (one that names no groups gets the
// user's groups on metad's host). An admin certificate is its own user
// and a superuser, or whoever it names in that metadata.

// Auth is metad's server interceptor that authenticates and authorizes
// each call and puts its identity (cairn.WithIdentity) and peer
// (trust.WithPeer) into the handler's context.
type Auth struct {
	// Insecure: no TLS (a loopback dev cluster): every caller is believed,
	// as ServerIdentity does.
	Insecure bool
	// Groups returns a user's groups on metad's host, for user
	// certificates.
	Groups func(user string) []string
	// Revoked is checked at every call too, so a certificate revoked
	// while its connection is open stops working at once.
	Revoked *trust.Revoked
	// Delegation checks a delegation token a Namespace call brings in
	// its metadata (cairn-delegation: a blockd serving WebHDFS or a
	// gateway acting for the token's owner) and returns the user it
	// names; nil refuses such calls.
	Delegation func(token string) (trust.Peer, error)
}

// Unary is the interceptor.
func (a *Auth) Unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if a.Insecure {
		return ServerIdentity(ctx, req, info, handler)
	}
	ctx, err := a.authorize(ctx, info.FullMethod, req)
	if err != nil {
		return nil, toStatus(err)
	}
	return handler(ctx, req)
}

// Stream refuses every streaming call: metad serves none.
func (a *Auth) Stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if a.Insecure {
		return handler(srv, ss)
	}
	return toStatus(cairn.E(info.FullMethod, cairn.KindPermission, "", "no streaming call is served"))
}

// NoCertificate is the detail of a call refused for want of a certificate.
const NoCertificate = "no client certificate from this cluster's CA: a blockd or a mount joins with a token " +
	"(cairn admin -join-token --role blockd|mount), a user gets one from an admin (cairn admin -join-token --role user NAME, or cairn cert issue)"

func (a *Auth) authorize(ctx context.Context, method string, req any) (context.Context, error) {
	op := "metad " + method[strings.LastIndexByte(method, '/')+1:]
	p, leaf, ok := tlsPeer(ctx)
	if method == pb.Trust_Join_FullMethodName || method == pb.Trust_JoinMetad_FullMethodName {
		return ctx, nil
	}
	if !ok {
		return nil, cairn.E(op, cairn.KindPermission, "", NoCertificate)
	}
	if a.Revoked.IsRevoked(leaf.SerialNumber) {
		return nil, cairn.E(op, cairn.KindPermission, "", fmt.Sprintf("certificate %s (serial %s) is revoked", p, trust.SerialString(leaf.SerialNumber)))
	}
	if time.Now().After(leaf.NotAfter) {
		return nil, cairn.E(op, cairn.KindPermission, "", fmt.Sprintf("certificate %s expired at %v", p, leaf.NotAfter))
	}
	ctx = trust.WithPeer(ctx, p)
	refuse := func(why string) error {
		return cairn.E(op, cairn.KindPermission, "", fmt.Sprintf("certificate %s: %s", p, why))
	}
	if tok, ok := delegationOf(ctx); ok && strings.HasPrefix(method, "/"+pb.Namespace_ServiceDesc.ServiceName+"/") {
		return a.byDelegation(ctx, op, method, p, tok)
	}
	switch {
	case strings.HasPrefix(method, "/"+pb.Registry_ServiceDesc.ServiceName+"/"):
		if p.Role != trust.RoleBlockd {
			return nil, refuse("only a blockd certificate may call the registry")
		}
		if id, ok := storageIDOf(req); ok && id != p.Name {
			return nil, refuse(fmt.Sprintf("a blockd may speak only for itself, not for storage %q", id))
		}
		return ctx, nil
	case method == pb.Trust_RenewCert_FullMethodName, method == pb.Trust_DataTransfer_FullMethodName, method == pb.Trust_ServerDefaults_FullMethodName:
		return ctx, nil
	case method == pb.Trust_IssueJoinToken_FullMethodName, method == pb.Trust_IssueUILink_FullMethodName, method == pb.Namespace_Report_FullMethodName,
		method == pb.Namespace_Checkpoint_FullMethodName, method == pb.Namespace_SetNodeAdmin_FullMethodName,
		method == pb.Namespace_RefreshNodes_FullMethodName, method == pb.Namespace_Balance_FullMethodName:
		if p.Role != trust.RoleAdmin {
			return nil, refuse("an admin operation needs an admin certificate")
		}
	case method == pb.Namespace_AddMetad_FullMethodName:
		// An admin, or a metad asking to join its group (metad --join):
		// only holders of the CA's key make metad certificates.
		if p.Role != trust.RoleAdmin && p.Role != trust.RoleMetad {
			return nil, refuse("adding a metad to the group needs an admin or a metad certificate")
		}
	case method == pb.Namespace_RemoveMetad_FullMethodName:
		if p.Role != trust.RoleAdmin {
			return nil, refuse("an admin operation needs an admin certificate")
		}
	case strings.HasPrefix(method, "/"+pb.Namespace_ServiceDesc.ServiceName+"/"):
		if p.Role != trust.RoleMount && p.Role != trust.RoleUser && p.Role != trust.RoleAdmin {
			return nil, refuse("namespace calls need a mount, user or admin certificate")
		}
	default:
		return nil, refuse("unknown method")
	}
	asserted, hasAssert := assertedIdentity(ctx)
	switch p.Role {
	case trust.RoleUser:
		if hasAssert && asserted.User != p.Name {
			return nil, refuse(fmt.Sprintf("a user certificate is that user only; it may not speak for %q", asserted.User))
		}
		id := cairn.Identity{User: p.Name}
		if a.Groups != nil {
			id.Groups = a.Groups(p.Name)
		}
		return cairn.WithIdentity(ctx, id), nil
	case trust.RoleMount, trust.RoleAdmin:
		if hasAssert {
			if len(asserted.Groups) == 0 && a.Groups != nil {
				// A gateway (cairn httpfs) names the user whose
				// certificate or name it was given, not its groups: they
				// are metad's host's, as a user certificate's are.
				asserted.Groups = a.Groups(asserted.User)
			}
			return cairn.WithIdentity(ctx, asserted), nil
		}
		if p.Role == trust.RoleAdmin {
			return cairn.WithIdentity(ctx, cairn.Identity{User: p.Name}), nil
		}
	}
	return ctx, nil
}

// byDelegation authorizes a Namespace call that brings a delegation
// token: it runs as the token's owner, a user (never an admin), whoever
// holds the connection's certificate; it may not get or renew a token.
func (a *Auth) byDelegation(ctx context.Context, op, method string, p trust.Peer, tok string) (context.Context, error) {
	if a.Delegation == nil {
		return nil, cairn.E(op, cairn.KindPermission, "", "this metad takes no delegation tokens over RPC")
	}
	switch method {
	case pb.Namespace_GetDelegationToken_FullMethodName:
		return nil, cairn.E(op, cairn.KindPermission, "", "a delegation token cannot be used to get another")
	case pb.Namespace_RenewDelegationToken_FullMethodName:
		// As HDFS: renewing takes a credential of one's own, else whoever
		// saw a token could keep it alive to its max date.
		return nil, cairn.E(op, cairn.KindPermission, "", "a delegation token cannot be used to renew one")
	}
	owner, err := a.Delegation(tok)
	if err != nil {
		return nil, cairn.E(op, cairn.KindPermission, "", fmt.Sprintf("delegation token brought by %s: %v", p, err))
	}
	id := cairn.Identity{User: owner.Name}
	if a.Groups != nil {
		id.Groups = a.Groups(owner.Name)
	}
	return cairn.WithIdentity(trust.WithPeer(ctx, owner), id), nil
}

// IsAdminSelf reports whether ctx's call comes from an admin certificate
// speaking as itself: a superuser.
func IsAdminSelf(ctx context.Context) bool {
	p, ok := trust.PeerFrom(ctx)
	if !ok || p.Role != trust.RoleAdmin {
		return false
	}
	id, ok := cairn.IdentityFrom(ctx)
	return ok && id.User == p.Name
}

// tlsPeer returns the peer whose verified certificate made the call.
func tlsPeer(ctx context.Context) (trust.Peer, *x509.Certificate, bool) {
	pr, ok := peer.FromContext(ctx)
	if !ok {
		return trust.Peer{}, nil, false
	}
	ti, ok := pr.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return trust.Peer{}, nil, false
	}
	return trust.PeerOfState(ti.State)
}

// assertedIdentity is the identity a call's metadata asserts.
func assertedIdentity(ctx context.Context) (cairn.Identity, bool) {
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok {
		return cairn.Identity{}, false
	}
	u := md.Get(mdUser)
	if len(u) != 1 || u[0] == "" {
		return cairn.Identity{}, false
	}
	id := cairn.Identity{User: u[0]}
	if g := md.Get(mdGroups); len(g) == 1 && g[0] != "" {
		id.Groups = strings.Split(g[0], ",")
	}
	return id, true
}

// storageIDOf is the storage ID a registry request speaks for.
func storageIDOf(req any) (string, bool) {
	switch r := req.(type) {
	case *pb.Registration:
		return r.GetNode().GetStorageId(), true
	case *pb.BadReplicas:
		return r.GetReporter(), true
	case interface{ GetStorageId() string }:
		return r.GetStorageId(), true
	}
	return "", false
}
