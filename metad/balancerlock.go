package metad

import (
	"errors"
	"fmt"
	"sync"
	"time"
)

// One balancer at a time, as HDFS's: its Balancer holds /system/balancer.id
// open for writing, and a second one, failing to take the file's lease,
// exits with "Another Balancer is running."; a balancer killed without a
// word frees the file once its lease expires. Here metad holds the lease:
// the balancer named by the first Balance step is the one metad serves;
// each of its steps renews the lease, and BalanceStop ends it. Another
// balancer's steps are refused (KindBusy) while the lease runs: they change
// nothing. Once the one served has been silent for the lease (--balancer-
// lease), the next balancer to ask takes it over. The lease lives in
// memory only: after a restart of metad, the first balancer to ask has it.

// DefaultBalancerLease is how long a running balancer may be silent
// before another may start: HDFS's lease soft limit.
const DefaultBalancerLease = 60 * time.Second

// errAnotherBalancer is the refusal of a second balancer, in HDFS's
// words.
//
//lint:ignore ST1005 HDFS's text, capital and full stop included
var errAnotherBalancer = errors.New("Another Balancer is running.")

// balancerLock is the balancer metad serves and when it last asked.
type balancerLock struct {
	mu   sync.Mutex
	held bool
	id   string
	last time.Time
}

// acquire takes or renews the lease for balancer id at now; it refuses
// while another holds a lease younger than lease, changing nothing.
func (l *balancerLock) acquire(id string, now time.Time, lease time.Duration) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.held && l.id != id {
		if silent := now.Sub(l.last); silent < lease {
			return fmt.Errorf("%w (balancer %q, last heard %v ago; its lease lasts %v)", errAnotherBalancer, l.id, silent.Round(time.Millisecond), lease)
		}
	}
	l.held, l.id, l.last = true, id, now
	return nil
}

// release ends balancer id's lease, if it holds it.
func (l *balancerLock) release(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.held && l.id == id {
		l.held = false
	}
}
