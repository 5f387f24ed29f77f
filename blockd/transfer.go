package blockd

import (
	"context"
	"sync"

	"go.uber.org/zap"

	"cairn"
)

// Copies metad asks for (CmdTransfer) run on a fixed pool of workers, not
// a goroutine each: metad hands a blockd at most its streams' worth at a
// time (metad's --replication-max-streams-hard-limit, 4), so the pool is
// that size, and a queue takes what arrives while they are busy. A copy
// that finds the queue full is dropped with a warning: metad schedules
// its block again once the copy's pending timeout passes. The balancer's
// copies (those with a bandwidth) have a pool and a queue of their own,
// as metad counts them apart from the streams (its
// --balancer-max-concurrent-moves, 5): a copy that restores a block's
// replication never waits behind the balancer's.
const (
	transferWorkers = 4
	moveWorkers     = 5
	transferQueue   = 64
)

// queueTransfer hands a CmdTransfer to the transfer workers; it counts as
// active (the heartbeat's Active) from now until it is done.
func (d *Blockd) queueTransfer(c cairn.Command) {
	if len(c.Blocks) == 0 || len(c.Targets) == 0 {
		d.log.Warn("ignoring a copy command without blocks or targets", zap.Int("blocks", len(c.Blocks)), zap.Int("targets", len(c.Targets)))
		return
	}
	d.active.Add(1)
	queue := d.transfers
	if balancerCopy(c) {
		queue = d.moves
	}
	select {
	case queue <- c:
	default:
		d.active.Add(-1)
		d.log.Warn("copy queue full; metad will ask again", zap.Stringer("block", c.Blocks[0]), zap.Int("queued", transferQueue))
	}
}

// runTransfers runs the copies queued on queue on workers goroutines
// until ctx ends.
func (d *Blockd) runTransfers(ctx context.Context, queue <-chan cairn.Command, workers int) {
	runWorkers(ctx, workers, queue, func(c cairn.Command) {
		var t *throttler
		if balancerCopy(c) && d.throttle != nil {
			d.throttle.setRate(c.Bandwidth)
			t = d.throttle
		}
		d.replicate(c.Blocks, c.Tokens, c.Targets, t)
		d.active.Add(-1)
	})
}

// runWorkers runs do on each command from queue, on workers goroutines,
// until ctx ends; it returns once they all have.
func runWorkers(ctx context.Context, workers int, queue <-chan cairn.Command, do func(cairn.Command)) {
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case c := <-queue:
					do(c)
				}
			}
		}()
	}
	wg.Wait()
}
