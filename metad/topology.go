package metad

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
)

// The topology: which rack each blockd (and each client) is on, as a
// path like "/dc1/rack7". A blockd says its own rack (--rack), or metad
// asks a topology script (--topology-script, HDFS's
// net.topology.script.file.name and its ScriptBasedMapping): the script is
// run with up to scriptMaxArgs IP addresses as arguments and prints one
// rack path for each, separated by white space. Answers are cached for
// good; a failed run (an exit status, a timeout, the wrong count, an
// invalid path) puts its addresses on DefaultRack, cached for
// failedRackTTL only, and is logged.

// DefaultRack is the rack of a blockd that names none, and of every
// address a failed topology script was asked about (HDFS's).
const DefaultRack = "/default-rack"

const (
	// scriptMaxArgs is how many addresses one run of the script is given
	// (HDFS's net.topology.script.number.args).
	scriptMaxArgs = 100
	// scriptTimeout bounds one run of the script.
	scriptTimeout = 10 * time.Second
	// failedRackTTL is how long DefaultRack stands for an address the
	// script failed on before the script is asked again.
	failedRackTTL = time.Minute
	// maxRackLen bounds a rack path, from a blockd or from the script.
	maxRackLen = 255
)

// validRack checks a rack path: "/" followed by one or more non-empty
// components separated by "/", of printable ASCII without spaces, at most
// maxRackLen bytes (HDFS's NodeBase.normalize refuses a path that does not
// begin with "/", and drops a trailing one).
func validRack(r string) error {
	switch {
	case r == "":
		return fmt.Errorf("empty rack path")
	case len(r) > maxRackLen:
		return fmt.Errorf("rack path of %d bytes, over %d", len(r), maxRackLen)
	case r[0] != '/':
		return fmt.Errorf("rack path %q does not begin with /", r)
	}
	for _, c := range strings.Split(r[1:], "/") {
		if c == "" {
			return fmt.Errorf("rack path %q has an empty component", r)
		}
		for i := 0; i < len(c); i++ {
			if c[i] <= ' ' || c[i] > '~' {
				return fmt.Errorf("rack path %q has a byte 0x%02x that is not printable ASCII", r, c[i])
			}
		}
	}
	return nil
}

// parseScriptOutput splits a topology script's output into n rack paths,
// one per address it was given, in order.
func parseScriptOutput(out []byte, n int) ([]string, error) {
	racks := strings.Fields(string(out))
	if len(racks) != n {
		return nil, fmt.Errorf("printed %d rack paths for %d addresses", len(racks), n)
	}
	for _, r := range racks {
		if err := validRack(r); err != nil {
			return nil, err
		}
	}
	return racks, nil
}

type cachedRack struct {
	rack  string
	until time.Time // zero: for good
}

// topology resolves IP addresses to racks with the topology script, and
// caches the answers.
type topology struct {
	script string // empty: no script; blockds name their racks
	log    *zap.Logger
	now    func() time.Time

	mu    sync.Mutex
	cache map[string]cachedRack
}

func newTopology(script string, now func() time.Time, log *zap.Logger) *topology {
	return &topology{script: script, log: log, now: now, cache: map[string]cachedRack{}}
}

// resolve returns the rack of each address in ips, running the script for
// those not cached. Without a script it returns nil.
func (t *topology) resolve(ips []string) map[string]string {
	if t.script == "" {
		return nil
	}
	out := make(map[string]string, len(ips))
	var ask []string
	now := t.now()
	t.mu.Lock()
	for _, ip := range ips {
		if c, ok := t.cache[ip]; ok && (c.until.IsZero() || now.Before(c.until)) {
			out[ip] = c.rack
		} else if _, dup := out[ip]; !dup && !slices.Contains(ask, ip) {
			ask = append(ask, ip)
		}
	}
	t.mu.Unlock()
	for len(ask) > 0 {
		chunk := ask[:min(len(ask), scriptMaxArgs)]
		ask = ask[len(chunk):]
		racks, err := t.run(chunk)
		until := time.Time{}
		if err != nil {
			t.log.Error("topology script failed: the addresses are put on the default rack", zap.String("script", t.script),
				zap.Strings("addresses", chunk), zap.String("rack", DefaultRack), zap.Error(err))
			until = now.Add(failedRackTTL)
		}
		t.mu.Lock()
		for i, ip := range chunk {
			r := DefaultRack
			if err == nil {
				r = racks[i]
			}
			out[ip] = r
			t.cache[ip] = cachedRack{rack: r, until: until}
		}
		t.mu.Unlock()
	}
	return out
}

// run runs the script once with ips as its arguments.
func (t *topology) run(ips []string) ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), scriptTimeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, t.script, ips...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = time.Second
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("no answer within %v", scriptTimeout)
		}
		return nil, fmt.Errorf("%w; stderr: %q", err, tail(stderr.String(), 512))
	}
	return parseScriptOutput(stdout.Bytes(), len(ips))
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
