package rpc

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"cairn"
	"cairn/rpc/pb"
)

// Retries of calls that change metad's state, in the manner of HDFS's
// RetryCache. A call whose answer is lost (the connection broke, no
// answer came in time) may or may not have been applied; making it again
// must not apply it twice, nor answer EEXIST or ENOENT for the caller's
// own work. So each client connection has a random client ID, each
// mutating call a call ID, both sent in gRPC metadata; the client makes a
// call that failed in transport again with the same IDs
// (RetryInterceptor), and metad answers a (client ID, call ID) it has
// seen from its retry cache with the first answer, instead of applying
// the call again (metad/retrycache.go).

// Mutations are the calls metad must not apply twice, by gRPC full method
// name: the one table of them. A new RPC that changes the namespace, a
// file's blocks or a lease belongs here.
var Mutations = map[string]bool{
	pb.Namespace_Mkdir_FullMethodName:                  true,
	pb.Namespace_Mkdirs_FullMethodName:                 true,
	pb.Namespace_Create_FullMethodName:                 true,
	pb.Namespace_Rename_FullMethodName:                 true,
	pb.Namespace_Delete_FullMethodName:                 true,
	pb.Namespace_SetAttr_FullMethodName:                true,
	pb.Namespace_Symlink_FullMethodName:                true,
	pb.Namespace_Mknod_FullMethodName:                  true,
	pb.Namespace_SetXattr_FullMethodName:               true,
	pb.Namespace_RemoveXattr_FullMethodName:            true,
	pb.Namespace_Append_FullMethodName:                 true,
	pb.Namespace_AddBlock_FullMethodName:               true,
	pb.Namespace_Complete_FullMethodName:               true,
	pb.Namespace_Fsync_FullMethodName:                  true,
	pb.Namespace_AbandonBlock_FullMethodName:           true,
	pb.Namespace_UpdateBlockForPipeline_FullMethodName: true,
	pb.Namespace_UpdatePipeline_FullMethodName:         true,
	pb.Namespace_Unlink_FullMethodName:                 true,
	pb.Namespace_Release_FullMethodName:                true,
	pb.Namespace_Link_FullMethodName:                   true,
	pb.Namespace_Concat_FullMethodName:                 true,
	pb.Namespace_SetNodeAdmin_FullMethodName:           true,
	pb.Namespace_RefreshNodes_FullMethodName:           true,
	pb.Namespace_Balance_FullMethodName:                true,
	pb.Trust_Join_FullMethodName:                       true,
	pb.Namespace_GetDelegationToken_FullMethodName:     true,
	pb.Namespace_RenewDelegationToken_FullMethodName:   true,
	pb.Namespace_CancelDelegationToken_FullMethodName:  true,
}

// The client ID and call ID travel in gRPC metadata under these keys.
const (
	mdClientID = "cairn-client-id"
	mdCallID   = "cairn-call-id"
)

// ClientID identifies one client's connection to metad: 16 random bytes,
// sent as 32 lowercase hexadecimal digits.
type ClientID [16]byte

// NewClientID returns a random ClientID.
func NewClientID() ClientID {
	var id ClientID
	_, _ = rand.Read(id[:]) // crypto/rand.Read never fails
	return id
}

func (id ClientID) String() string { return hex.EncodeToString(id[:]) }

// CallKey names one mutating call: the client that made it and its call
// ID, the same for every attempt of the call.
type CallKey struct {
	Client ClientID
	Call   uint64
}

func (k CallKey) String() string { return fmt.Sprintf("%s/%d", k.Client, k.Call) }

// CallKeyFrom returns the CallKey an incoming call carries. A call with
// neither key carries none (ok false); one whose keys are malformed — not
// exactly one value each, a client ID not 32 lowercase hexadecimal digits,
// a call ID not a decimal number from 1 to 2^64-1 without leading zeros —
// is refused with a KindInvalid error.
func CallKeyFrom(ctx context.Context) (key CallKey, ok bool, err error) {
	md, _ := metadata.FromIncomingContext(ctx)
	return parseCallKey(md)
}

func parseCallKey(md metadata.MD) (CallKey, bool, error) {
	const op = "rpc.CallKey"
	cs, ns := md.Get(mdClientID), md.Get(mdCallID)
	if len(cs) == 0 && len(ns) == 0 {
		return CallKey{}, false, nil
	}
	if len(cs) != 1 || len(ns) != 1 {
		return CallKey{}, false, cairn.E(op, cairn.KindInvalid, "", fmt.Sprintf("want one %s and one %s, got %d and %d values", mdClientID, mdCallID, len(cs), len(ns)))
	}
	var k CallKey
	c := cs[0]
	if len(c) != 2*len(k.Client) || !lowerHex(c) {
		return CallKey{}, false, cairn.E(op, cairn.KindInvalid, "", fmt.Sprintf("%s %q is not %d lowercase hexadecimal digits", mdClientID, clip(c), 2*len(k.Client)))
	}
	_, _ = hex.Decode(k.Client[:], []byte(c)) // checked above
	n := ns[0]
	call, perr := strconv.ParseUint(n, 10, 64)
	if perr != nil || call == 0 || n[0] < '1' || n[0] > '9' {
		return CallKey{}, false, cairn.E(op, cairn.KindInvalid, "", fmt.Sprintf("%s %q is not a decimal number from 1 to %d", mdCallID, clip(n), uint64(1<<64-1)))
	}
	k.Call = call
	return k, true, nil
}

func lowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// clip shortens what a peer sent for an error message.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// ToStatus turns an error of metad's into the gRPC status its clients
// decode (Kind, Op, Path, detail), for server interceptors that answer a
// call themselves.
func ToStatus(err error) error { return toStatus(err) }

// RetryPolicy says how a client makes a mutating call again after a
// transport failure. Zero fields take the defaults.
type RetryPolicy struct {
	// Attempts bounds the attempts of one call, the first included
	// (default 8).
	Attempts int
	// AttemptTimeout bounds one attempt's wait for an answer; the call's
	// own deadline, if sooner, bounds it too (default 10 s).
	AttemptTimeout time.Duration
	// Backoff is the pause before the second attempt, doubled before each
	// next one up to MaxBackoff (defaults 100 ms and 2 s).
	Backoff, MaxBackoff time.Duration
	// Logger gets a line for each attempt made again; default none.
	Logger *zap.Logger
}

// Default retry policy.
const (
	DefaultRetryAttempts       = 8
	DefaultRetryAttemptTimeout = 10 * time.Second
	DefaultRetryBackoff        = 100 * time.Millisecond
	DefaultRetryMaxBackoff     = 2 * time.Second
)

func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.Attempts <= 0 {
		p.Attempts = DefaultRetryAttempts
	}
	if p.AttemptTimeout <= 0 {
		p.AttemptTimeout = DefaultRetryAttemptTimeout
	}
	if p.Backoff <= 0 {
		p.Backoff = DefaultRetryBackoff
	}
	if p.MaxBackoff < p.Backoff {
		p.MaxBackoff = max(DefaultRetryMaxBackoff, p.Backoff)
	}
	if p.Logger == nil {
		p.Logger = zap.NewNop()
	}
	return p
}

// RetryInterceptor returns a client interceptor for one connection to
// metad, whose client ID is id. It gives each call in Mutations the next
// call ID and, when an attempt fails in transport (Unavailable with no
// answer from metad, or no answer within the attempt's timeout while the
// call's own context still runs), makes it again with the same IDs, after
// a pause, up to p.Attempts times. Other calls pass through untouched.
//
// A call whose context names it already (CallNamer.Name: a client of a
// metad group names each call once, above its members' connections) keeps
// those IDs, so the call made again at another member — the new leader —
// is the same call there.
func RetryInterceptor(id ClientID, p RetryPolicy) grpc.UnaryClientInterceptor {
	p = p.withDefaults()
	namer := NewCallNamer(id)
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if !Mutations[method] {
			return invoker(ctx, method, req, reply, cc, opts...)
		}
		mctx, key := namer.Name(ctx, method)
		client, call := key.Client.String(), key.Call
		pause := p.Backoff
		for attempt := 1; ; attempt++ {
			actx, cancel := context.WithTimeout(mctx, p.AttemptTimeout)
			err := invoker(actx, method, req, reply, cc, opts...)
			cancel()
			if err == nil || !lostAnswer(ctx, err) || attempt >= p.Attempts {
				return err
			}
			p.Logger.Info("metad call lost its answer; making it again with the same call ID",
				zap.String("method", method), zap.String("client_id", client), zap.Uint64("call_id", call),
				zap.Int("attempt", attempt+1), zap.Duration("after", pause), zap.Error(err))
			t := time.NewTimer(pause)
			select {
			case <-ctx.Done():
				t.Stop()
				return err
			case <-t.C:
			}
			pause = min(2*pause, p.MaxBackoff)
		}
	}
}

// CallNamer gives mutating calls (Mutations) a client ID and call IDs.
type CallNamer struct {
	id    ClientID
	calls atomic.Uint64
}

// NewCallNamer names calls as client id.
func NewCallNamer(id ClientID) *CallNamer { return &CallNamer{id: id} }

// Name returns ctx carrying the IDs of a call of method, and the IDs: the
// ones ctx carries already, else this client's ID and its next call ID
// for a mutating call; a call of another method is left unnamed.
func (n *CallNamer) Name(ctx context.Context, method string) (context.Context, CallKey) {
	if !Mutations[method] {
		return ctx, CallKey{}
	}
	md, _ := metadata.FromOutgoingContext(ctx)
	if k, ok, err := parseCallKey(md); ok && err == nil {
		return ctx, k
	}
	k := CallKey{Client: n.id, Call: n.calls.Add(1)}
	return metadata.AppendToOutgoingContext(ctx, mdClientID, k.Client.String(), mdCallID, strconv.FormatUint(k.Call, 10)), k
}

// lostAnswer reports whether err, from an attempt of a call whose context
// is ctx, says the answer was lost in transport rather than given: a
// status that carries metad's ErrorDetail is an answer (even
// Unavailable, metad's KindUnavailable and KindRetry), and a deadline
// counts as lost only while ctx itself still runs.
func lostAnswer(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	st, ok := status.FromError(err)
	if !ok {
		return false
	}
	if _, answered := DetailKind(err); answered {
		return false
	}
	switch st.Code() {
	case codes.Unavailable, codes.DeadlineExceeded:
		return true
	}
	return false
}
