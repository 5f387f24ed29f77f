package rpc

import (
	"context"
	"time"

	"google.golang.org/grpc"

	"cairn"
	"cairn/rpc/pb"
)

// Delegations is metad's delegation token service, served on the
// Namespace gRPC service as HDFS's ClientProtocol serves it: a namespace
// whose implementation has these methods serves them, another answers
// Unimplemented.
type Delegations interface {
	// GetDelegationToken signs a token naming the caller, renewable by
	// renewer (the caller when empty).
	GetDelegationToken(ctx context.Context, renewer string) (token string, expiry, maxDate time.Time, err error)
	// RenewDelegationToken extends a token's life (its renewer only).
	RenewDelegationToken(ctx context.Context, token string) (expiry time.Time, err error)
	// CancelDelegationToken ends a token (its owner or renewer).
	CancelDelegationToken(ctx context.Context, token string) error
}

func (s *namespaceServer) delegations(op string) (Delegations, error) {
	d, ok := s.ns.(Delegations)
	if !ok {
		return nil, toStatus(cairn.E(op, cairn.KindInvalid, "", "this metad serves no delegation tokens"))
	}
	return d, nil
}

func (s *namespaceServer) GetDelegationToken(ctx context.Context, r *pb.DelegationTokenRequest) (*pb.DelegationTokenReply, error) {
	d, err := s.delegations("rpc.GetDelegationToken")
	if err != nil {
		return nil, err
	}
	tok, exp, maxDate, err := d.GetDelegationToken(ctx, r.Renewer)
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.DelegationTokenReply{Token: tok, ExpiryMs: exp.UnixMilli(), MaxDateMs: maxDate.UnixMilli()}, nil
}

func (s *namespaceServer) RenewDelegationToken(ctx context.Context, r *pb.DelegationTokenRef) (*pb.RenewDelegationReply, error) {
	d, err := s.delegations("rpc.RenewDelegationToken")
	if err != nil {
		return nil, err
	}
	exp, err := d.RenewDelegationToken(ctx, r.Token)
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.RenewDelegationReply{ExpiryMs: exp.UnixMilli()}, nil
}

func (s *namespaceServer) CancelDelegationToken(ctx context.Context, r *pb.DelegationTokenRef) (*pb.Empty, error) {
	d, err := s.delegations("rpc.CancelDelegationToken")
	if err != nil {
		return nil, err
	}
	return empty, toStatus(d.CancelDelegationToken(ctx, r.Token))
}

// DelegationClient is the remote stub of Delegations.
type DelegationClient struct{ c pb.NamespaceClient }

var _ Delegations = (*DelegationClient)(nil)

// NewDelegationClient returns a stub that calls metad over conn.
func NewDelegationClient(conn grpc.ClientConnInterface) *DelegationClient {
	return &DelegationClient{c: pb.NewNamespaceClient(conn)}
}

func (d *DelegationClient) GetDelegationToken(ctx context.Context, renewer string) (string, time.Time, time.Time, error) {
	r, err := d.c.GetDelegationToken(ctx, &pb.DelegationTokenRequest{Renewer: renewer})
	if err != nil {
		return "", time.Time{}, time.Time{}, fromStatus("rpc.GetDelegationToken", err)
	}
	return r.Token, time.UnixMilli(r.ExpiryMs), time.UnixMilli(r.MaxDateMs), nil
}

func (d *DelegationClient) RenewDelegationToken(ctx context.Context, token string) (time.Time, error) {
	r, err := d.c.RenewDelegationToken(ctx, &pb.DelegationTokenRef{Token: token})
	if err != nil {
		return time.Time{}, fromStatus("rpc.RenewDelegationToken", err)
	}
	return time.UnixMilli(r.ExpiryMs), nil
}

func (d *DelegationClient) CancelDelegationToken(ctx context.Context, token string) error {
	_, err := d.c.CancelDelegationToken(ctx, &pb.DelegationTokenRef{Token: token})
	return fromStatus("rpc.CancelDelegationToken", err)
}
