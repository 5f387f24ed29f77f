package metad

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"

	"go.uber.org/zap"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"cairn/rpc"
	"cairn/rpc/pb"
)

// The retry cache of a metad group (HDFS keeps its RetryCache entries in
// the edit log for the same reason): a mutating call's (client ID, call
// ID) travels in the Raft entry of its first change (entryCall, beside
// the batch), and its answer in an entry of its own proposed once the
// call has answered (entryAnswer). Every member applying them fills its
// retry cache (retrycache.go), so a client that makes the call again at
// a new leader after a failover gets the first answer there, and the
// change is not applied twice.
//
// A leader that dies between the two entries leaves the call applied
// but its answer unknown: the new leader runs such a call made again
// once more, telling it that its change was applied already
// (callReplayed), so it answers as its first run did: a create with the
// file it made rather than "file exists" (Create), an AddBlock with the
// block it allocated (retriedBlock), a call of replayedDone success
// without running. docs/ARCHITECTURE.md has the table of every call.
//
// Bound: the entries live in memory, at most RetryCacheSize answers for
// RetryCacheExpiry each, as on a single metad. A restarted member fills
// its cache again from the entries Raft replays (those of its log since
// its last snapshot, --trailing-logs at least); a member restored from a
// snapshot keeps what it had and learns the calls after the snapshot.

// pendingCall is a mutating call under way on the leader, carried in its
// context down to the store's apply.
type pendingCall struct {
	key    rpc.CallKey
	method string
	sum    [sha256.Size]byte
	// replay: the call was made before and its change applied, but its
	// answer was lost with the leader that ran it.
	replay bool
	// marked: a Raft entry carried the call's IDs (its first change).
	marked atomic.Bool
}

type pendingCallKey struct{}

func withPendingCall(ctx context.Context, c *pendingCall) context.Context {
	return context.WithValue(ctx, pendingCallKey{}, c)
}

func pendingCallOf(ctx context.Context) *pendingCall {
	c, _ := ctx.Value(pendingCallKey{}).(*pendingCall)
	return c
}

// callReplayed reports whether ctx's call is made again after a failover
// lost its answer: its change is in the store already.
func callReplayed(ctx context.Context) bool {
	c := pendingCallOf(ctx)
	return c != nil && c.replay
}

// replayedDone are the calls whose change is one batch, committed only
// when the call succeeds, and whose reply is empty: made again after a
// failover lost the answer (callReplayed), such a call succeeded, so the
// new leader answers success without running it. Run again, each would
// find its own change and refuse: a rename or a delete "no such file",
// a link, symlink or mknod "file exists", a complete "not open for
// writing", an abandon "not the last block", a concat its sources gone,
// a cancelled delegation token unknown. The table of every mutating
// call's replay is in docs/ARCHITECTURE.md ("The retry cache in the
// log").
var replayedDone = map[string]bool{
	pb.Namespace_Mkdirs_FullMethodName:                true,
	pb.Namespace_Mkdir_FullMethodName:                 true,
	pb.Namespace_Complete_FullMethodName:              true,
	pb.Namespace_Rename_FullMethodName:                true,
	pb.Namespace_Delete_FullMethodName:                true,
	pb.Namespace_Unlink_FullMethodName:                true,
	pb.Namespace_Release_FullMethodName:               true,
	pb.Namespace_Symlink_FullMethodName:               true,
	pb.Namespace_Mknod_FullMethodName:                 true,
	pb.Namespace_SetXattr_FullMethodName:              true,
	pb.Namespace_RemoveXattr_FullMethodName:           true,
	pb.Namespace_Link_FullMethodName:                  true,
	pb.Namespace_Concat_FullMethodName:                true,
	pb.Namespace_Fsync_FullMethodName:                 true,
	pb.Namespace_AbandonBlock_FullMethodName:          true,
	pb.Namespace_UpdatePipeline_FullMethodName:        true,
	pb.Namespace_CancelDelegationToken_FullMethodName: true,
}

// A call record: client ID (16), call ID (8 BE), request sum (32), method.
const callRecordMin = 16 + 8 + sha256.Size + 1

func encodeCallRecord(key rpc.CallKey, method string, sum [sha256.Size]byte) []byte {
	out := make([]byte, 0, callRecordMin-1+len(method))
	out = append(out, key.Client[:]...)
	out = binary.BigEndian.AppendUint64(out, key.Call)
	out = append(out, sum[:]...)
	return append(out, method...)
}

func decodeCallRecord(b []byte) (key rpc.CallKey, method string, sum [sha256.Size]byte, err error) {
	if len(b) < callRecordMin {
		return key, "", sum, fmt.Errorf("a call record of %d bytes", len(b))
	}
	copy(key.Client[:], b)
	key.Call = binary.BigEndian.Uint64(b[16:])
	copy(sum[:], b[24:])
	method = string(b[24+sha256.Size:])
	if !rpc.Mutations[method] {
		return key, "", sum, fmt.Errorf("a call record of %q, not a mutating call", clipString(method))
	}
	return key, method, sum, nil
}

func clipString(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// encodeCallEntry is an entry of type typ: the call record's length (4
// BE), the record, then body (a batch's Repr, or an answer).
func encodeCallEntry(typ byte, rec, body []byte) []byte {
	out := make([]byte, 0, 5+len(rec)+len(body))
	out = append(out, typ)
	out = binary.BigEndian.AppendUint32(out, uint32(len(rec)))
	out = append(out, rec...)
	return append(out, body...)
}

// splitCallEntry splits the entry data after the type byte into the
// call record and the body.
func splitCallEntry(data []byte) (rec, body []byte, err error) {
	if len(data) < 4 {
		return nil, nil, errors.New("a call entry cut short")
	}
	n := binary.BigEndian.Uint32(data)
	if uint64(n) > uint64(len(data)-4) {
		return nil, nil, fmt.Errorf("a call entry's record of %d bytes in %d", n, len(data)-4)
	}
	return data[4 : 4+n], data[4+n:], nil
}

// An answer: 0 then the reply message, or 1 then the error's gRPC status.
const (
	answerReply = 0
	answerError = 1
)

func encodeAnswer(resp any, err error) ([]byte, error) {
	if err != nil {
		b, merr := proto.Marshal(status.Convert(err).Proto())
		if merr != nil {
			return nil, merr
		}
		return append([]byte{answerError}, b...), nil
	}
	msg, ok := resp.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("a reply of type %T, not a protobuf message", resp)
	}
	b, merr := proto.MarshalOptions{Deterministic: true}.Marshal(msg)
	if merr != nil {
		return nil, merr
	}
	return append([]byte{answerReply}, b...), nil
}

// decodeAnswer decodes an answer to method: its reply or error.
func decodeAnswer(method string, b []byte) (resp any, callErr error, err error) {
	if len(b) < 1 {
		return nil, nil, errors.New("an empty answer")
	}
	switch b[0] {
	case answerError:
		var st spb.Status
		if err := proto.Unmarshal(b[1:], &st); err != nil {
			return nil, nil, fmt.Errorf("an answer's status: %w", err)
		}
		callErr = status.ErrorProto(&st)
		if callErr == nil {
			return nil, nil, errors.New("an error answer with status OK")
		}
		return nil, callErr, nil
	case answerReply:
		msg, err := replyMessage(method)
		if err != nil {
			return nil, nil, err
		}
		if err := proto.Unmarshal(b[1:], msg); err != nil {
			return nil, nil, fmt.Errorf("an answer to %s: %w", method, err)
		}
		return msg, nil, nil
	}
	return nil, nil, fmt.Errorf("an answer of kind %d", b[0])
}

// replyMessage is an empty reply of gRPC method /SERVICE/METHOD.
func replyMessage(method string) (proto.Message, error) {
	svc, name, ok := strings.Cut(strings.TrimPrefix(method, "/"), "/")
	if !ok {
		return nil, fmt.Errorf("method %q is not /SERVICE/METHOD", clipString(method))
	}
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(svc))
	if err != nil {
		return nil, fmt.Errorf("method %s: %w", method, err)
	}
	sd, ok := d.(protoreflect.ServiceDescriptor)
	if !ok {
		return nil, fmt.Errorf("%s is not a service", svc)
	}
	md := sd.Methods().ByName(protoreflect.Name(name))
	if md == nil {
		return nil, fmt.Errorf("service %s has no method %s", svc, name)
	}
	mt, err := protoregistry.GlobalTypes.FindMessageByName(md.Output().FullName())
	if err != nil {
		return nil, fmt.Errorf("reply of %s: %w", method, err)
	}
	return mt.New().Interface(), nil
}

// proposeAnswer replicates the answer of call c, which changed the
// store; it does not wait: the call's change is in the log already, and
// an answer lost with this leader is the case callReplayed covers.
func (rep *replica) proposeAnswer(c *pendingCall, resp any, err error) {
	body, eerr := encodeAnswer(resp, err)
	if eerr != nil {
		rep.m.log.Warn("a call's answer cannot be replicated", zap.String("call", c.key.String()), zap.String("method", c.method), zap.Error(eerr))
		return
	}
	rep.r.Apply(encodeCallEntry(entryAnswer, encodeCallRecord(c.key, c.method, c.sum), body), 0)
}

// noteCalls fills the retry cache from a committed entry: the call whose
// change it carries, or a call's answer. A malformed record is logged
// and skipped: the store's change stands.
func (m *Metad) noteCalls(index uint64, data []byte) {
	if m.retries == nil || len(data) < 1 || (data[0] != entryCall && data[0] != entryAnswer) {
		return
	}
	rec, body, err := splitCallEntry(data[1:])
	var key rpc.CallKey
	var method string
	var sum [sha256.Size]byte
	if err == nil {
		key, method, sum, err = decodeCallRecord(rec)
	}
	if err == nil && data[0] == entryAnswer {
		var resp any
		var callErr error
		if resp, callErr, err = decodeAnswer(method, body); err == nil {
			m.retries.answered(key, method, sum, resp, callErr)
			return
		}
	}
	if err != nil {
		m.log.Warn("a raft entry's call record is unreadable; the retry cache goes without it", zap.Uint64("index", index), zap.Error(err))
		return
	}
	m.retries.applied(key, method, sum)
}
