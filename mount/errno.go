package mount

import (
	"context"
	"errors"
	"syscall"

	"go.uber.org/zap"

	"cairn"
)

// errnos is the one table from a cairn error Kind to the errno a program
// sees.
var errnos = [...]syscall.Errno{
	cairn.KindOther:       syscall.EIO,
	cairn.KindNotExist:    syscall.ENOENT,
	cairn.KindExist:       syscall.EEXIST,
	cairn.KindNotDir:      syscall.ENOTDIR,
	cairn.KindIsDir:       syscall.EISDIR,
	cairn.KindNotEmpty:    syscall.ENOTEMPTY,
	cairn.KindPermission:  syscall.EPERM,
	cairn.KindAccess:      syscall.EACCES,
	cairn.KindInvalid:     syscall.EINVAL,
	cairn.KindBusy:        syscall.EBUSY,
	cairn.KindRetry:       syscall.EAGAIN,
	cairn.KindNamespace:   syscall.EIO,
	cairn.KindNoSpace:     syscall.ENOSPC,
	cairn.KindIO:          syscall.EIO,
	cairn.KindUnavailable: syscall.EIO,
	cairn.KindNameTooLong: syscall.ENAMETOOLONG,
	cairn.KindSafeMode:    syscall.EROFS,
	cairn.KindNotLeader:   syscall.EAGAIN,
}

// errno translates err for the kernel: a cairn Kind through the table;
// otherwise an errno already in the chain, an interrupted or timed-out
// call, or an unsupported operation; anything else is EIO.
func errno(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	if k := cairn.KindOf(err); k != cairn.KindOther && int(k) < len(errnos) {
		return errnos[k]
	}
	var e syscall.Errno
	switch {
	case errors.As(err, &e):
		return e
	case errors.Is(err, context.Canceled):
		return syscall.EINTR
	case errors.Is(err, context.DeadlineExceeded):
		return syscall.ETIMEDOUT
	case errors.Is(err, errors.ErrUnsupported):
		return syscall.ENOTSUP
	}
	return errnos[cairn.KindOther]
}

// failed logs a failure of msg on path: at INFO, with the reason and the
// errno, when it is one a user meets in normal use (a refusal by the
// permission checks or the rules, a full cluster, a name too long); at
// WARN with metad's reason in safe mode; at ERROR when it is a fault.
func (f *fsys) failed(msg, path string, err error) {
	switch cairn.KindOf(err) {
	case cairn.KindPermission, cairn.KindAccess, cairn.KindNoSpace, cairn.KindNameTooLong:
		reason := err.Error()
		var ce *cairn.Error
		if errors.As(err, &ce) && ce.Detail != "" {
			reason = ce.Detail
		}
		f.log.Info(msg, zap.String("path", path), zap.String("rule", reason), zap.String("errno", errno(err).Error()))
	case cairn.KindSafeMode:
		f.log.Warn(msg, zap.String("path", path), zap.String("reason", err.Error()), zap.String("errno", errno(err).Error()))
	default:
		f.log.Error(msg, zap.String("path", path), zap.Error(err))
	}
}

// xattrErrno translates the error of an extended attribute call, where
// "does not exist" is said of the attribute, on a file the kernel just
// found: ENODATA (ENOATTR), as getxattr(2) and removexattr(2) answer.
func xattrErrno(err error) syscall.Errno {
	if cairn.KindOf(err) == cairn.KindNotExist {
		return syscall.ENODATA
	}
	return errno(err)
}
