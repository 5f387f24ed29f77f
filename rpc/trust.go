package rpc

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"cairn"
	"cairn/rpc/pb"
	"cairn/trust"
)

// TrustService is metad's certificate service (the gRPC service Trust).
type TrustService interface {
	// Join signs csr for the peer the join token allows, once per token.
	Join(ctx context.Context, token string, csr []byte) (cert, ca []byte, err error)
	// RenewCert signs csr for the caller's own peer.
	RenewCert(ctx context.Context, csr []byte) (cert, ca []byte, err error)
	// IssueJoinToken makes a join token (admins only).
	IssueJoinToken(ctx context.Context, role trust.Role, name string, ttl time.Duration) (string, trust.JoinToken, error)
	// DataTransfer says whether the cluster encrypts block data (metad
	// --encrypt-data): then blockds' data ports take mutual TLS only.
	DataTransfer(ctx context.Context) (encrypt bool, err error)
	// IssueUILink makes a one-time sign-in link's token for metad's HTTP
	// UI, for the calling admin (admins only); it returns the token, its
	// expiry and the address metad's HTTP port is bound to.
	IssueUILink(ctx context.Context, ttl time.Duration) (token string, expiry time.Time, httpAddr string, err error)
	// ServerDefaults is HDFS's getServerDefaults: how long the trash
	// keeps deleted paths (metad --trash-interval; 0: trash is off).
	ServerDefaults(ctx context.Context) (trashInterval time.Duration, err error)
	// JoinMetad hands the new member of a metad group that token (a join
	// token of role metad) names, member, what a member holds; once per
	// token, and only while member is not in the group already.
	JoinMetad(ctx context.Context, token, member string) (MemberKit, error)
}

// MemberKit is what a new member of a metad group gets from the group:
// the cluster CA's keys, the fields of the data directory's VERSION
// (the namespace ID), and the revocation list.
type MemberKit struct {
	CA      trust.CAMaterial
	Version map[string]string
	Revoked []byte
}

// RegisterTrust serves t on s.
func RegisterTrust(s *grpc.Server, t TrustService) { pb.RegisterTrustServer(s, &trustServer{t: t}) }

type trustServer struct {
	pb.UnimplementedTrustServer
	t TrustService
}

func (s *trustServer) Join(ctx context.Context, r *pb.JoinRequest) (*pb.CertReply, error) {
	cert, ca, err := s.t.Join(ctx, r.Token, r.Csr)
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.CertReply{Cert: cert, Ca: ca}, nil
}

func (s *trustServer) RenewCert(ctx context.Context, r *pb.RenewCertRequest) (*pb.CertReply, error) {
	cert, ca, err := s.t.RenewCert(ctx, r.Csr)
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.CertReply{Cert: cert, Ca: ca}, nil
}

func (s *trustServer) IssueJoinToken(ctx context.Context, r *pb.JoinTokenRequest) (*pb.JoinTokenReply, error) {
	tok, t, err := s.t.IssueJoinToken(ctx, trust.Role(r.Role), r.Name, time.Duration(r.TtlMs)*time.Millisecond)
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.JoinTokenReply{Token: tok, Id: t.IDString(), ExpiryUnix: t.Expiry.Unix()}, nil
}

func (s *trustServer) DataTransfer(ctx context.Context, _ *pb.Empty) (*pb.DataTransferReply, error) {
	enc, err := s.t.DataTransfer(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.DataTransferReply{Encrypt: enc}, nil
}

func (s *trustServer) ServerDefaults(ctx context.Context, _ *pb.Empty) (*pb.ServerDefaultsReply, error) {
	iv, err := s.t.ServerDefaults(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.ServerDefaultsReply{TrashIntervalMs: iv.Milliseconds()}, nil
}

func (s *trustServer) IssueUILink(ctx context.Context, r *pb.UILinkRequest) (*pb.UILinkReply, error) {
	tok, exp, addr, err := s.t.IssueUILink(ctx, time.Duration(r.TtlMs)*time.Millisecond)
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.UILinkReply{Token: tok, ExpiryUnix: exp.Unix(), HttpAddr: addr}, nil
}

func (s *trustServer) JoinMetad(ctx context.Context, r *pb.JoinMetadRequest) (*pb.JoinMetadReply, error) {
	k, err := s.t.JoinMetad(ctx, r.Token, r.Member)
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.JoinMetadReply{CaCert: k.CA.Cert, CaKey: k.CA.Key, JoinKey: k.CA.JoinKey, Version: k.Version, Revoked: k.Revoked}, nil
}

// TrustClient is the remote stub of TrustService.
type TrustClient struct{ c pb.TrustClient }

var _ TrustService = (*TrustClient)(nil)

// NewTrustClient returns a stub that calls metad over conn.
func NewTrustClient(conn grpc.ClientConnInterface) *TrustClient {
	return &TrustClient{c: pb.NewTrustClient(conn)}
}

func (t *TrustClient) Join(ctx context.Context, token string, csr []byte) ([]byte, []byte, error) {
	r, err := t.c.Join(ctx, &pb.JoinRequest{Token: token, Csr: csr})
	if err != nil {
		return nil, nil, fromStatus("rpc.Join", err)
	}
	return r.Cert, r.Ca, nil
}

func (t *TrustClient) RenewCert(ctx context.Context, csr []byte) ([]byte, []byte, error) {
	r, err := t.c.RenewCert(ctx, &pb.RenewCertRequest{Csr: csr})
	if err != nil {
		return nil, nil, fromStatus("rpc.RenewCert", err)
	}
	return r.Cert, r.Ca, nil
}

func (t *TrustClient) IssueJoinToken(ctx context.Context, role trust.Role, name string, ttl time.Duration) (string, trust.JoinToken, error) {
	r, err := t.c.IssueJoinToken(ctx, &pb.JoinTokenRequest{Role: string(role), Name: name, TtlMs: ttl.Milliseconds()})
	if err != nil {
		return "", trust.JoinToken{}, fromStatus("rpc.IssueJoinToken", err)
	}
	jt, _, _, err := trust.ParseJoinToken(r.Token)
	return r.Token, jt, err
}

func (t *TrustClient) DataTransfer(ctx context.Context) (bool, error) {
	r, err := t.c.DataTransfer(ctx, &pb.Empty{})
	if err != nil {
		return false, fromStatus("rpc.DataTransfer", err)
	}
	return r.Encrypt, nil
}

func (t *TrustClient) ServerDefaults(ctx context.Context) (time.Duration, error) {
	r, err := t.c.ServerDefaults(ctx, &pb.Empty{})
	if err != nil {
		return 0, fromStatus("rpc.ServerDefaults", err)
	}
	return time.Duration(r.TrashIntervalMs) * time.Millisecond, nil
}

func (t *TrustClient) IssueUILink(ctx context.Context, ttl time.Duration) (string, time.Time, string, error) {
	r, err := t.c.IssueUILink(ctx, &pb.UILinkRequest{TtlMs: ttl.Milliseconds()})
	if err != nil {
		return "", time.Time{}, "", fromStatus("rpc.IssueUILink", err)
	}
	return r.Token, time.Unix(r.ExpiryUnix, 0), r.HttpAddr, nil
}

// JoinMetad asks for a new member's kit (TrustService.JoinMetad).
func (t *TrustClient) JoinMetad(ctx context.Context, token, member string) (MemberKit, error) {
	r, err := t.c.JoinMetad(ctx, &pb.JoinMetadRequest{Token: token, Member: member})
	if err != nil {
		return MemberKit{}, fromStatus("rpc.JoinMetad", err)
	}
	return MemberKit{CA: trust.CAMaterial{Cert: r.CaCert, Key: r.CaKey, JoinKey: r.JoinKey}, Version: r.Version, Revoked: r.Revoked}, nil
}

// Fetch is a trust.Fetch that renews over t.
func (t *TrustClient) Fetch(ctx context.Context, csr []byte) ([]byte, error) {
	cert, _, err := t.RenewCert(ctx, csr)
	return cert, err
}

// Transport returns the dial option of a connection to metad: TLS 1.3
// with h's certificate, metad's verified against the cluster CA; or plain
// text when h is nil (an insecure dev cluster).
func Transport(h *trust.Holder) grpc.DialOption {
	if h == nil {
		return grpc.WithTransportCredentials(insecure.NewCredentials())
	}
	return grpc.WithTransportCredentials(credentials.NewTLS(trust.ClientConfig(h, trust.RoleMetad)))
}

// Join gets credentials for a new node from metad at addr with a join
// token: it makes a key and a request naming want (a token that names an
// identity overrides want.Name), sends them over TLS that verifies metad
// against the CA fingerprint in the token, and saves what metad signs in
// dir.
func Join(ctx context.Context, addr, token string, want trust.Peer, dir string) (*trust.Creds, error) {
	jt, _, _, err := trust.ParseJoinToken(token)
	if err != nil {
		return nil, fmt.Errorf("join: %w", err)
	}
	if jt.Role != want.Role {
		return nil, fmt.Errorf("join: the token is for a %s, not a %s", jt.Role, want.Role)
	}
	if jt.Name != "" {
		want.Name = jt.Name
	}
	key, err := trust.NewKey()
	if err != nil {
		return nil, err
	}
	csr, err := trust.NewCSR(key, want)
	if err != nil {
		return nil, fmt.Errorf("join: %w", err)
	}
	var ca *x509.Certificate
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(
		trust.JoinConfig(jt.CAFingerprint(), func(c *x509.Certificate) { ca = c }))),
		// Join is a mutation: a retry after a lost answer gets that answer,
		// not "token used".
		grpc.WithChainUnaryInterceptor(RetryInterceptor(NewClientID(), RetryPolicy{})))
	if err != nil {
		return nil, fmt.Errorf("join: metad %s: %w", addr, err)
	}
	defer conn.Close()
	certDER, caDER, err := NewTrustClient(conn).Join(ctx, token, csr)
	if err != nil {
		return nil, fmt.Errorf("join: %w", err)
	}
	if ca == nil || string(ca.Raw) != string(caDER) {
		return nil, fmt.Errorf("join: metad answered with a CA other than its handshake's")
	}
	c, err := trust.SaveCreds(dir, key, certDER, caDER)
	if err != nil {
		return nil, fmt.Errorf("join: %w", err)
	}
	return c, nil
}

// FetchMemberKit gets a new metad group member's kit with a join token
// of role metad naming member: it asks each of addrs in turn (the leader
// answers; a follower refuses, naming it), over TLS that verifies the
// member asked against the CA fingerprint in the token, again until one
// answers, one refuses the token, or ctx ends.
func FetchMemberKit(ctx context.Context, addrs []string, token, member string) (MemberKit, error) {
	jt, _, _, err := trust.ParseJoinToken(token)
	if err != nil {
		return MemberKit{}, fmt.Errorf("join the metad group: %w", err)
	}
	if jt.Role != trust.RoleMetad {
		return MemberKit{}, fmt.Errorf("join the metad group: the token is for a %s, not a metad (cairn admin -join-token --role metad --name %s)", jt.Role, member)
	}
	if jt.Name != member {
		return MemberKit{}, fmt.Errorf("join the metad group: the token is for member %s, this metad is %s", jt.Name, member)
	}
	pause := 200 * time.Millisecond
	for {
		var last error
		for i := 0; i < len(addrs); i++ {
			a := addrs[i]
			k, leader, err := fetchKit(ctx, a, jt.CAFingerprint(), token, member)
			if err == nil {
				return k, nil
			}
			var wrong *wrongCluster
			if errors.As(err, &wrong) || !errors.Is(err, cairn.ErrNotLeader) && !errors.Is(err, cairn.ErrUnavailable) {
				return MemberKit{}, fmt.Errorf("join the metad group at %s: %w", a, err)
			}
			if leader != "" && trust.ValidMemberAddr(leader) == nil && !slices.Contains(addrs, leader) {
				addrs = append(addrs, leader) // a follower named the leader
			}
			last = fmt.Errorf("%s: %w", a, err)
		}
		select {
		case <-ctx.Done():
			return MemberKit{}, fmt.Errorf("join the metad group: no leader answered (last: %v): %w", last, ctx.Err())
		case <-time.After(pause):
		}
		pause = min(2*pause, 2*time.Second)
	}
}

// wrongCluster is a handshake with a member whose CA is not the token's.
type wrongCluster struct{ err error }

func (w *wrongCluster) Error() string { return w.err.Error() }

// leaderTrailer is the gRPC trailer in which a follower of a metad group
// names the leader (metad.LeaderTrailer, not imported).
const leaderTrailer = "cairn-leader"

// fetchKit asks the member at addr; when it refuses as a follower, it
// returns the leader it names too.
func fetchKit(ctx context.Context, addr, fingerprint, token, member string) (MemberKit, string, error) {
	var ca *x509.Certificate
	var refused atomic.Pointer[wrongCluster]
	cfg := trust.JoinConfig(fingerprint, func(c *x509.Certificate) { ca = c })
	verify := cfg.VerifyPeerCertificate
	cfg.VerifyPeerCertificate = func(raw [][]byte, chains [][]*x509.Certificate) error {
		err := verify(raw, chains)
		if err != nil {
			refused.Store(&wrongCluster{err})
		}
		return err
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		return MemberKit{}, "", fmt.Errorf("metad %s: %w", addr, err)
	}
	defer conn.Close()
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var md metadata.MD
	r, err := pb.NewTrustClient(conn).JoinMetad(cctx, &pb.JoinMetadRequest{Token: token, Member: member}, grpc.Trailer(&md))
	if w := refused.Load(); w != nil {
		return MemberKit{}, "", w
	}
	if err != nil {
		leader := ""
		if v := md.Get(leaderTrailer); len(v) == 1 {
			leader = v[0]
		}
		return MemberKit{}, leader, fromStatus("rpc.JoinMetad", err)
	}
	if ca == nil || string(ca.Raw) != string(r.CaCert) {
		return MemberKit{}, "", &wrongCluster{errors.New("the member answered with a CA other than its handshake's")}
	}
	return MemberKit{CA: trust.CAMaterial{Cert: r.CaCert, Key: r.CaKey, JoinKey: r.JoinKey}, Version: r.Version, Revoked: r.Revoked}, "", nil
}
