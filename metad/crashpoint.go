package metad

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"go.uber.org/zap"
)

// A crash point for end-to-end tests: CAIRN_CRASH=before-answer:METHOD:N[:MARK]
// in metad's environment SIGKILLs metad when the Nth successful call of
// METHOD (the gRPC method's name, AddBlock say) it ran has its change
// in — on a group's leader, committed by a majority — and its answer is
// not yet given nor replicated: the window a failover loses an answer
// in (raftcalls.go). With MARK, only the metad that creates the file MARK
// first crashes, so the members of a group given the same environment
// crash once between them. Without the variable nothing is counted.

// crashEnv names the variable.
const crashEnv = "CAIRN_CRASH"

type crashPoint struct {
	method string // "/AddBlock"
	n      int64
	mark   string
	seen   atomic.Int64
}

var (
	crashOnce sync.Once
	crashAt   *crashPoint
)

// parseCrashPoint parses the value of CAIRN_CRASH.
func parseCrashPoint(v string) (*crashPoint, error) {
	parts := strings.SplitN(v, ":", 4)
	if len(parts) < 3 || parts[0] != "before-answer" || parts[1] == "" || strings.Contains(parts[1], "/") {
		return nil, fmt.Errorf("%s=%q: want before-answer:METHOD:N[:MARK]", crashEnv, clipString(v))
	}
	n, err := strconv.ParseInt(parts[2], 10, 64)
	if err != nil || n < 1 {
		return nil, fmt.Errorf("%s=%q: the count %q is not a number from 1", crashEnv, clipString(v), clipString(parts[2]))
	}
	c := &crashPoint{method: "/" + parts[1], n: n}
	if len(parts) == 4 {
		if parts[3] == "" {
			return nil, errors.New(crashEnv + ": an empty mark file name")
		}
		c.mark = parts[3]
	}
	return c, nil
}

// crashBeforeAnswer is called by the retry cache between a mutating
// call's run and its answer; err is the call's outcome.
func crashBeforeAnswer(log *zap.Logger, method string, err error) {
	crashOnce.Do(func() {
		v, ok := os.LookupEnv(crashEnv)
		if !ok {
			return
		}
		c, perr := parseCrashPoint(v)
		if perr != nil {
			log.Error("crash point ignored", zap.Error(perr))
			return
		}
		crashAt = c
	})
	c := crashAt
	if c == nil || err != nil || !strings.HasSuffix(method, c.method) || c.seen.Add(1) != c.n {
		return
	}
	if c.mark != "" {
		f, ferr := os.OpenFile(c.mark, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if ferr != nil {
			log.Info("crash point passed: another metad crashed at it", zap.String("method", method), zap.String("mark", c.mark))
			return
		}
		_ = f.Close()
	}
	log.Warn("crash point: SIGKILL before the answer", zap.String("method", method), zap.Int64("call", c.n))
	_ = log.Sync()
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {} // the signal takes the process
}
