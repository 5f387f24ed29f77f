package mount

import (
	"context"
	"time"
)

// Interrupts. When a process waiting in a call to the mount gets a signal,
// the kernel sends an INTERRUPT, and go-fuse cancels the context of the
// request. A read or a lookup may honor it: it changed nothing, and EINTR
// tells the truth. A call that changes the namespace may not: metad may
// have applied it already, or may apply it after a cancelled caller went
// away, and answering EINTR for a change that happened makes a program
// that retries see EEXIST or ENOENT for its own work. So a mutation runs
// with the request's values (the caller) but not its cancellation, to its
// end, and its answer — done or refused — is what the program gets; the
// client library makes it again if its answer is lost in transport, and
// metad's retry cache keeps that from applying it twice.

// A lookup, a stat, a directory listing or an attribute read is not
// cancelled by an interrupt either: it changes nothing, but the kernel
// answers an interrupted FUSE request with EINTR, which stat(2) and
// lstat(2) do not restart even under SA_RESTART, and a program (any Go
// program, whose runtime signals its own threads) would see a stat fail
// for no reason. Such a call is short and bounded by lookupTimeout; a
// fatal signal still ends the caller at once. Reads of file data stay
// interruptible: they may wait on a hung blockd.

// lookupTimeout bounds a lookup, stat or listing made for one request.
const lookupTimeout = 30 * time.Second

// lookingUp returns the context of a metadata read made for the request
// of ctx: its caller, no cancellation by an interrupt, a bound of its own.
func lookingUp(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), lookupTimeout)
}

// mutationTimeout bounds a namespace change made for one request, the
// lookup that answers it included, when metad does not answer.
const mutationTimeout = 2 * time.Minute

// mutating returns the context for a namespace change made for the request
// of ctx: its caller, no cancellation by an interrupt, a bound of its own.
func mutating(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), mutationTimeout)
}
