package rpc

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"cairn"
	"cairn/rpc/pb"
)

var kindCodes = map[cairn.Kind]codes.Code{
	cairn.KindNotExist:    codes.NotFound,
	cairn.KindExist:       codes.AlreadyExists,
	cairn.KindNotDir:      codes.FailedPrecondition,
	cairn.KindIsDir:       codes.FailedPrecondition,
	cairn.KindNotEmpty:    codes.FailedPrecondition,
	cairn.KindPermission:  codes.PermissionDenied,
	cairn.KindAccess:      codes.PermissionDenied,
	cairn.KindInvalid:     codes.InvalidArgument,
	cairn.KindBusy:        codes.Aborted,
	cairn.KindRetry:       codes.Unavailable,
	cairn.KindNamespace:   codes.FailedPrecondition,
	cairn.KindNoSpace:     codes.ResourceExhausted,
	cairn.KindIO:          codes.DataLoss,
	cairn.KindUnavailable: codes.Unavailable,
	cairn.KindNameTooLong: codes.InvalidArgument,
	cairn.KindSafeMode:    codes.FailedPrecondition,
	cairn.KindNotLeader:   codes.FailedPrecondition,
}

// toStatus turns an error from a service implementation into a gRPC status
// that carries its Kind, Op, Path and detail.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) {
		return status.Error(codes.Canceled, err.Error())
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return status.Error(codes.DeadlineExceeded, err.Error())
	}
	var e *cairn.Error
	if !errors.As(err, &e) {
		return status.Error(codes.Unknown, err.Error())
	}
	code, ok := kindCodes[e.Kind]
	if !ok {
		code = codes.Unknown
	}
	detail := e.Detail
	if e.Err != nil {
		if detail != "" {
			detail += ": "
		}
		detail += e.Err.Error()
	}
	st := status.New(code, err.Error())
	if withDetail, derr := st.WithDetails(&pb.ErrorDetail{Kind: uint32(e.Kind), Op: e.Op, Path: e.Path, Detail: detail}); derr == nil {
		st = withDetail
	}
	return st.Err()
}

// DetailKind returns the kind of cairn error a gRPC error answer carries
// in its detail, and whether it carries one (a transport failure, or an
// answer from something other than a cairn server, does not).
func DetailKind(err error) (cairn.Kind, bool) {
	if err == nil {
		return cairn.KindOther, false
	}
	st, ok := status.FromError(err)
	if !ok {
		return cairn.KindOther, false
	}
	for _, d := range st.Details() {
		if ed, ok := d.(*pb.ErrorDetail); ok {
			return cairn.Kind(ed.Kind), true
		}
	}
	return cairn.KindOther, false
}

// fromStatus turns a gRPC error back into a typed *cairn.Error. Transport
// failures become KindUnavailable.
func fromStatus(op string, err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return &cairn.Error{Op: op, Kind: cairn.KindUnavailable, Err: err}
	}
	for _, d := range st.Details() {
		if ed, ok := d.(*pb.ErrorDetail); ok {
			return &cairn.Error{Op: ed.Op, Path: ed.Path, Kind: cairn.Kind(ed.Kind), Detail: ed.Detail}
		}
	}
	switch st.Code() {
	case codes.Canceled:
		return context.Canceled
	case codes.DeadlineExceeded:
		return context.DeadlineExceeded
	case codes.Unavailable:
		return &cairn.Error{Op: op, Kind: cairn.KindUnavailable, Detail: st.Message()}
	}
	return &cairn.Error{Op: op, Kind: cairn.KindOther, Detail: st.Message()}
}
