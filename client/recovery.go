package client

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"cairn"
)

// excludeFor is how long a blockd that failed a writer is kept out of its
// new blocks and added nodes (HDFS's excluded-nodes cache expiry).
const excludeFor = 10 * time.Minute

// A writer whose pipeline is short of a node asks for one again after
// refillFirst, doubling the wait after each failed try up to refillMax.
const (
	refillFirst = 500 * time.Millisecond
	refillMax   = 10 * time.Second
)

// addTries is how many blockds one recovery tries to add, one after the
// other, when bringing one up to date fails.
const addTries = 3

// exclusion is a blockd that failed this writer, until when it is avoided,
// and whether it hung (answered nothing in time) rather than refused.
type exclusion struct {
	node  cairn.Node
	until time.Time
	hung  bool
}

// failure is why a node left the current block's pipeline (or why metad
// had none), for the error that says what happened.
type failure struct {
	node string
	kind cairn.Kind // KindNoSpace for a full disk
	hung bool
	why  string
}

func failureOf(node string, err error) failure {
	f := failure{node: node, kind: cairn.KindIO}
	var pe *pipelineError
	if errors.As(err, &pe) {
		f.kind, f.hung = pe.kind, pe.timedOut
	} else if k := cairn.KindOf(err); k != cairn.KindOther {
		f.kind = k
	}
	if err != nil {
		f.why = err.Error()
	}
	return f
}

func (f failure) String() string {
	if f.node == "" {
		return f.why
	}
	return f.node + ": " + f.why
}

func (w *Writer) exclude(n cairn.Node, hung bool) {
	until := time.Now().Add(excludeFor)
	for i := range w.excluded {
		if w.excluded[i].node.StorageID == n.StorageID {
			w.excluded[i].until, w.excluded[i].hung = until, w.excluded[i].hung || hung
			return
		}
	}
	w.excluded = append(w.excluded, exclusion{node: n, until: until, hung: hung})
}

// exclusions are the blockds to avoid now: every one that failed this
// writer within excludeFor, or with all unset only those that hung. The
// expired ones are forgotten.
func (w *Writer) exclusions(all bool) []cairn.Node {
	now := time.Now()
	w.excluded = slices.DeleteFunc(w.excluded, func(e exclusion) bool { return now.After(e.until) })
	var out []cairn.Node
	for _, e := range w.excluded {
		if all || e.hung {
			out = append(out, e.node)
		}
	}
	return out
}

// dropNode takes node i out of the current block's pipeline for why.
func (w *Writer) dropNode(i int, why error) {
	n := w.lb.Locations[i]
	f := failureOf(n.DataAddr, why)
	w.c.log.Warn("dropping a blockd from the pipeline", zap.String("path", w.path), zap.Stringer("block", w.lb.Block),
		zap.String("blockd", n.DataAddr), zap.Bool("hung", f.hung), zap.Stringer("kind", f.kind), zap.Error(why))
	w.exclude(n, f.hung)
	w.failures = append(w.failures, f)
	w.dropped = append(w.dropped, n)
	w.lb.Locations = append(w.lb.Locations[:i:i], w.lb.Locations[i+1:]...)
}

// lostErr is the error of a writer that cannot go on: what happened to
// block b and each failure behind it. It is KindNoSpace when the last
// failure was a full disk or metad finding no room, or when some failure
// was and no blockd hung: the other failures of such a write (a broken
// connection, a refused setup) are the full blockds dropping out, seen
// from another side, and ENOSPC is what the program can act on. It is
// KindIO otherwise.
func (w *Writer) lostErr(b cairn.Block, what string, last error) error {
	kind := cairn.KindIO
	full, hung := 0, 0
	parts := make([]string, 0, len(w.failures))
	for _, f := range w.failures {
		if f.kind == cairn.KindNoSpace {
			full++
		}
		if f.hung {
			hung++
		}
		parts = append(parts, f.String())
	}
	if last != nil && failureOf("", last).kind == cairn.KindNoSpace || full > 0 && hung == 0 {
		kind = cairn.KindNoSpace
	}
	detail := what
	if b.ID != 0 {
		detail = b.String() + ": " + what
	}
	if len(parts) > 0 {
		detail += "; failed: " + strings.Join(parts, "; ")
	}
	return cairn.E("client.Write", kind, w.path, detail)
}

// replaceNode is the replace-datanode-on-failure policy: HDFS's DEFAULT
// (with replication r >= 3, add a node when at most r/2 remain, or when
// the block was hflushed or appended to), and besides whenever a single
// node is left of r > 1, where one more failure would lose acknowledged
// bytes.
func (w *Writer) replaceNode() bool {
	n, r := len(w.lb.Locations), w.fi.Replication
	switch {
	case n >= r:
		return false
	case n == 1:
		return true
	}
	return r >= 3 && (n <= r/2 || w.flushed || w.appended)
}

// recover rebuilds a broken pipeline: the failed node is dropped, the block
// gets a new generation stamp, a node is added back when the policy wants
// one (replaceNode), the survivors keep what every one of them
// acknowledged, and the unacknowledged packets are sent again.
func (w *Writer) recover(cause error) error { return w.recoverWith(cause, nil, nil) }

// recoverWith is recover, with packets not yet handed to the broken
// pipeline to send after its unacknowledged ones. A nil cause drops no
// node: the pipeline is rebuilt to add node (refill).
func (w *Writer) recoverWith(cause error, extra []packet, node *cairn.Node) error {
	old := w.pl
	if old == nil {
		return cause
	}
	old.close()
	w.pl = nil
	w.c.met.recovered()
	unacked, acked := old.pending()
	w.acked = acked
	unacked = append(unacked, extra...)
	if cause != nil {
		bad := 0
		var pe *pipelineError
		if errors.As(cause, &pe) && pe.bad >= 0 && pe.bad < len(w.lb.Locations) {
			bad = pe.bad
		}
		w.dropNode(bad, cause)
	}
	if len(w.lb.Locations) == 0 {
		return w.lostErr(w.lb.Block, "every blockd of the pipeline failed", cause)
	}
	ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
	defer cancel()
	oldBlock := w.lb.Block
	ulb, err := w.c.NS.UpdateBlockForPipeline(ctx, w.ref(), oldBlock)
	if err != nil {
		return err
	}
	gs := ulb.GenStamp
	w.lb.Token = ulb.Token // for the transfer to an added node and the new pipeline
	if node != nil || w.replaceNode() {
		w.refillAt = time.Time{}
		if w.addNode(ctx, gs, acked, node) {
			w.refillWait = 0
		} else {
			w.refillLater()
		}
	}
	for {
		lb := *w.lb
		lb.GenStamp = gs
		pl, badSetup, err := openPipeline(w.c.dataDial(ctx), &lb, w.chunk, w.c.opts.Name, stageRecovery, acked, w.to)
		if err == nil {
			w.pl = pl
			break
		}
		if badSetup < 0 || badSetup >= len(w.lb.Locations) || len(w.lb.Locations) == 1 {
			w.failures = append(w.failures, failureOf("", err))
			return w.lostErr(w.lb.Block, "pipeline recovery failed", err)
		}
		w.dropNode(badSetup, err)
	}
	if w.refillAt.IsZero() && w.replaceNode() {
		w.refillLater()
	}
	w.lb.GenStamp = gs
	w.stage = stageRecovery
	updated := w.lb.Block
	updated.Len = acked
	if err := w.c.NS.UpdatePipeline(ctx, w.ref(), oldBlock, updated, w.lb.Locations); err != nil {
		return err
	}
	w.c.log.Info("pipeline recovered", zap.String("path", w.path), zap.Stringer("block", w.lb.Block),
		zap.Int("nodes", len(w.lb.Locations)), zap.Int64("acked", acked), zap.Int("resending", len(unacked)))
	for i, p := range unacked {
		queued, err := w.pl.send(p)
		if err != nil {
			if !queued {
				// Not yet in the new pipeline's queue: this one and the rest
				// must go through the next recovery.
				return w.recoverWith(err, unacked[i:], nil)
			}
			return w.recoverWith(err, unacked[i+1:], nil)
		}
	}
	return nil
}

// refillLater schedules the next try to add a node, backing off.
func (w *Writer) refillLater() {
	w.refillWait = min(max(2*w.refillWait, refillFirst), refillMax)
	w.refillAt = time.Now().Add(w.refillWait)
}

// refill tries again to add a node to a pipeline short of one: once metad
// offers a blockd, the pipeline is drained and rebuilt with it. Without
// one it tries again later (refillLater).
func (w *Writer) refill() error {
	w.refillAt = time.Time{}
	if !w.replaceNode() {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
	n, err := w.pickNode(ctx, nil)
	cancel()
	if err != nil {
		w.c.log.Info("still no blockd to add to the pipeline", zap.String("path", w.path), zap.Error(err))
		w.refillLater()
		return nil
	}
	if err := w.waitAcked(); err != nil {
		return err
	}
	if w.pl == nil || !w.replaceNode() {
		return nil // a recovery while draining added one
	}
	return w.recoverWith(nil, nil, &n)
}

// pickNode asks metad for a blockd to add to the pipeline, avoiding those
// that failed this writer and those tried already; when there is none,
// avoiding only those that hung and those tried.
func (w *Writer) pickNode(ctx context.Context, tried []cairn.Node) (cairn.Node, error) {
	excl := append(w.exclusions(true), tried...)
	n, err := w.c.NS.AdditionalNode(ctx, w.ref(), w.lb.Block, w.lb.Locations, excl)
	if cairn.KindOf(err) == cairn.KindNoSpace {
		if fewer := append(w.exclusions(false), tried...); len(fewer) < len(excl) {
			n, err = w.c.NS.AdditionalNode(ctx, w.ref(), w.lb.Block, w.lb.Locations, fewer)
		}
	}
	return n, err
}

// addNode has a survivor copy the acknowledged bytes to n (or to a blockd
// metad picks) and adds it to the pipeline. Failing that, writing goes on
// without it, and it reports false.
func (w *Writer) addNode(ctx context.Context, gs cairn.GenStamp, acked int64, n *cairn.Node) bool {
	var tried []cairn.Node
	for range addTries {
		if n == nil {
			picked, err := w.pickNode(ctx, tried)
			if err != nil {
				w.c.log.Info("no blockd to add to the pipeline", zap.String("path", w.path), zap.Error(err))
				return false
			}
			n = &picked
		}
		if w.bringUp(gs, acked, *n) {
			return true
		}
		tried = append(tried, *n)
		n = nil
	}
	return false
}

// bringUp has a survivor copy the acknowledged bytes to n and adds n to
// the pipeline.
func (w *Writer) bringUp(gs cairn.GenStamp, acked int64, n cairn.Node) bool {
	var errs []error
	for _, src := range w.lb.Locations {
		err := transfer(w.c.dataDial(context.Background()), w.lb.Block, w.lb.Token, src, n, gs, acked, w.chunk, w.c.opts.Name, w.to)
		if err == nil {
			w.lb.Locations = append(w.lb.Locations, n)
			w.c.log.Info("added a blockd to the pipeline", zap.String("path", w.path), zap.Stringer("block", w.lb.Block),
				zap.String("blockd", n.DataAddr), zap.String("from", src.DataAddr), zap.Int64("bytes", acked))
			return true
		}
		errs = append(errs, fmt.Errorf("from %s: %w", src.DataAddr, err))
	}
	err := errors.Join(errs...)
	w.c.log.Warn("could not bring a new blockd up to date", zap.String("blockd", n.DataAddr), zap.Error(err))
	w.exclude(n, false)
	return false
}

// giveUp closes the file at metad after a fatal error, at the bytes every
// node acknowledged, so it is not left open for writing: a last block
// with nothing acknowledged is abandoned; one with acknowledged bytes is
// ended at that length through the nodes that hold them (endAt); an
// append whose pipeline never came up leaves the block as it was. When
// even that fails, the file stays open for writing until metad's lease
// recovery closes it, once this client stops renewing its lease.
func (w *Writer) giveUp() {
	if w.claim {
		return // created closed, never claimed: metad has nothing open
	}
	ctx, cancel := context.WithTimeout(context.Background(), completeTimeout)
	defer cancel()
	last := w.prev
	switch {
	case w.appendFrom != nil:
		last = w.appendFrom
	case w.lb != nil && w.acked == 0:
		if err := w.c.NS.AbandonBlock(ctx, w.ref(), w.lb.Block); err != nil {
			w.c.log.Error("could not abandon the block of a failed write; the file stays open for writing until its lease is recovered",
				zap.String("path", w.path), zap.Stringer("block", w.lb.Block), zap.Error(err))
			return
		}
	case w.lb != nil:
		b, err := w.endAt(ctx)
		if err != nil {
			w.c.log.Error("could not end the block of a failed write at its acknowledged bytes; the file stays open for writing until its lease is recovered",
				zap.String("path", w.path), zap.Stringer("block", w.lb.Block), zap.Int64("acked", w.acked), zap.Error(err))
			return
		}
		last = &b
	}
	w.lb, w.appendFrom = nil, nil
	if err := w.complete(ctx, last); err != nil {
		w.c.log.Error("could not close the file after a failed write; it stays open for writing until its lease is recovered",
			zap.String("path", w.path), zap.Error(err))
		return
	}
	size := int64(0)
	if last != nil {
		size = last.Len
	}
	w.c.log.Info("closed the file at the acknowledged bytes after a failed write", zap.String("path", w.path),
		zap.Int64("last_block_len", size))
}

// endAt finalizes the current block at the bytes every node acknowledged,
// through a RECOVERY pipeline of the nodes that may hold them (the
// pipeline's, then the dropped ones, latest first) that ends at once, and
// records the new stamp and length at metad.
func (w *Writer) endAt(ctx context.Context) (cairn.Block, error) {
	nodes := append([]cairn.Node(nil), w.lb.Locations...)
	for i := len(w.dropped) - 1; i >= 0; i-- {
		d := w.dropped[i]
		if !slices.ContainsFunc(nodes, func(n cairn.Node) bool { return n.StorageID == d.StorageID }) {
			nodes = append(nodes, d)
		}
	}
	ulb, err := w.c.NS.UpdateBlockForPipeline(ctx, w.ref(), w.lb.Block)
	if err != nil {
		return cairn.Block{}, err
	}
	gs := ulb.GenStamp
	w.lb.Token = ulb.Token
	var errs []error
	for len(nodes) > 0 {
		lb := *w.lb
		lb.GenStamp, lb.Locations = gs, nodes
		pl, bad, err := openPipeline(w.c.dataDial(ctx), &lb, w.chunk, w.c.opts.Name, stageRecovery, w.acked, w.to)
		if err == nil {
			_, err = pl.send(packet{off: w.acked, flags: flagLast})
			if err == nil {
				err = pl.waitAll()
			}
			pl.close()
			if err == nil {
				updated := lb.Block
				updated.Len = w.acked
				if err := w.c.NS.UpdatePipeline(ctx, w.ref(), w.lb.Block, updated, nodes); err != nil {
					return cairn.Block{}, err
				}
				return updated, nil
			}
			bad = 0
			var pe *pipelineError
			if errors.As(err, &pe) {
				bad = pe.bad
			}
		}
		errs = append(errs, err)
		if bad < 0 || bad >= len(nodes) {
			break
		}
		nodes = slices.Delete(nodes, bad, bad+1)
	}
	return cairn.Block{}, fmt.Errorf("no blockd could end %s at %d bytes: %w", w.lb.Block, w.acked, errors.Join(errs...))
}
