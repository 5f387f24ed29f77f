package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"cairn"
	"cairn/checksum"
)

// packetTarget is the data carried by one write packet, rounded to whole
// chunks.
const packetTarget = 128 << 10

// completeTimeout bounds how long Close waits for metad to hear of the last
// block's replicas.
const completeTimeout = 60 * time.Second

// rpcTimeout bounds one metadata call made while writing.
const rpcTimeout = 30 * time.Second

// Writer writes a file sequentially through block pipelines: a new file
// (Client.Create) or the end of an existing one (Client.Append). A blockd
// that fails mid-block is dropped from the pipeline and writing goes on
// with the others; the caller sees an error only when no replica can take
// the data. It is not safe for concurrent use.
type Writer struct {
	c      *Client
	path   string
	fi     cairn.FileInfo
	chunk  int
	packet int // bytes of data per packet

	// The block being written: lb (nil between blocks), sent = block
	// offset where buf starts, buf = bytes not yet sent.
	lb       *cairn.LocatedBlock
	stage    stage // how the next pipeline takes its replicas
	pl       *pipeline
	sent     int64
	buf      []byte
	prev     *cairn.Block // the last finished block
	excluded []cairn.Node // blockds that failed this writer
	// appendFrom is the last block as metad records it until the append
	// pipeline is set up and its new stamp committed.
	appendFrom *cairn.Block

	size     int64 // bytes accepted by Write
	err      error // sticky: the first failure
	closed   bool
	closeErr error
	leases   func() // ends this writer's lease renewal
}

func newWriter(c *Client, path string, fi cairn.FileInfo) *Writer {
	chunk := checksum.DefaultChunkSize
	w := &Writer{c: c, path: path, fi: fi, chunk: chunk, packet: max(1, packetTarget/chunk) * chunk}
	w.leases = c.holdLease()
	return w
}

// Append reopens an existing file to write at its end.
//
// A file whose last writer is gone may be under block recovery; Append
// waits for it (metad answers ErrRetry meanwhile) until ctx ends or
// appendWait passes. The file's last block keeps its stamp at metad until
// the append pipeline is set up: the writer takes a new stamp
// (UpdateBlockForPipeline) and commits it (UpdatePipeline) before its
// first byte, so an appender that dies earlier leaves the file as it was.
func (c *Client) Append(ctx context.Context, path string) (*Writer, error) {
	var fi cairn.FileInfo
	var last *cairn.LocatedBlock
	var err error
	deadline := time.Now().Add(appendWait)
	for delay := 50 * time.Millisecond; ; delay = min(2*delay, time.Second) {
		fi, last, err = c.NS.Append(ctx, path, c.opts.Name)
		if cairn.KindOf(err) != cairn.KindRetry || time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(delay):
		}
	}
	if err != nil {
		return nil, err
	}
	w := newWriter(c, path, fi)
	w.size = fi.Size
	if last != nil {
		rctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
		defer cancel()
		gs, err := c.NS.UpdateBlockForPipeline(rctx, w.ref(), last.Block)
		if err != nil {
			w.leases()
			return nil, err
		}
		old := last.Block
		w.appendFrom = &old
		last.GenStamp = gs
		w.lb = last
		w.sent = last.Len
		w.stage = stageAppend
	}
	return w, nil
}

// appendWait bounds how long Append waits for a recovery of the file.
const appendWait = 60 * time.Second

// ref names the file for the writer protocol: by inode number, so a
// rename or an unlink of the file does not disturb its writer.
func (w *Writer) ref() cairn.WriterRef {
	return cairn.WriterRef{FileID: w.fi.Inode, Path: w.path, Client: w.c.opts.Name}
}

// Size is the size of the file with every byte accepted so far.
func (w *Writer) Size() int64 { return w.size }

// Write appends p to the file. Bytes are sent a packet at a time; an error
// from the pipelines is returned by a later Write or by Close.
func (w *Writer) Write(p []byte) (int, error) {
	if w.closed {
		return 0, cairn.E("client.Write", cairn.KindInvalid, w.path, "writer is closed")
	}
	if w.err != nil {
		return 0, w.err
	}
	n := 0
	for len(p) > 0 {
		end := w.sent + int64(len(w.buf))
		// A packet ends on a chunk boundary, so a packet that starts inside
		// a chunk is short, and the block ends at the block size.
		packetEnd := min((w.sent/int64(w.chunk))*int64(w.chunk)+int64(w.packet), w.fi.BlockSize)
		k := int(min(int64(len(p)), packetEnd-end))
		w.buf = append(w.buf, p[:k]...)
		p = p[k:]
		n += k
		w.size += int64(k)
		if w.sent+int64(len(w.buf)) == packetEnd {
			if err := w.flushPacket(0, false); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

// flushPacket sends the buffered bytes as one packet; at the block size, or
// when end is set, it ends the block.
func (w *Writer) flushPacket(flags uint8, end bool) error {
	if len(w.buf) == 0 && !end && flags == 0 {
		return nil
	}
	if w.lb == nil {
		if err := w.newBlock(); err != nil {
			return w.fail(err)
		}
	}
	last := end || w.sent+int64(len(w.buf)) == w.fi.BlockSize
	if last {
		flags |= flagLast
	}
	if err := w.send(packet{off: w.sent, data: append([]byte(nil), w.buf...), flags: flags}); err != nil {
		return w.fail(err)
	}
	w.sent += int64(len(w.buf))
	w.buf = w.buf[:0]
	if last {
		return w.endBlock()
	}
	return nil
}

// endBlock waits for every ack of the block, which the blockds have then
// finalized.
func (w *Writer) endBlock() error {
	if err := w.waitAcked(); err != nil {
		return err
	}
	if w.pl != nil {
		w.pl.close()
		w.pl = nil
	}
	b := w.lb.Block
	b.Len = w.sent
	w.prev = &b
	w.lb, w.sent, w.stage = nil, 0, stageCreate
	return nil
}

// waitAcked waits until every packet sent is acknowledged by every node of
// the pipeline, recovering the pipeline (and waiting for the packets it
// sends again) as often as nodes fail.
func (w *Writer) waitAcked() error {
	for w.pl != nil {
		err := w.pl.waitAll()
		if err == nil {
			return nil
		}
		if err := w.recover(err); err != nil {
			return w.fail(err)
		}
	}
	return nil
}

func (w *Writer) fail(err error) error {
	if w.err == nil {
		w.err = err
		w.c.log.Warn("write failed", zap.String("path", w.path), zap.Error(err))
	}
	if w.pl != nil {
		w.pl.close()
		w.pl = nil
	}
	return w.err
}

// newBlock asks metad for the next block and its pipeline.
func (w *Writer) newBlock() error {
	ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
	defer cancel()
	lb, err := w.c.NS.AddBlock(ctx, w.ref(), w.prev, w.excluded)
	if err != nil {
		return err
	}
	w.lb, w.sent, w.stage = &lb, 0, stageCreate
	return nil
}

// send hands one packet to the pipeline, setting one up, or recovering it,
// as needed.
func (w *Writer) send(p packet) error {
	for {
		if w.pl == nil {
			if err := w.setup(); err != nil {
				return err
			}
		}
		queued, err := w.pl.send(p)
		if err == nil {
			return nil
		}
		if err := w.recover(err); err != nil {
			return err
		}
		if queued {
			return nil // the recovery sent it again with the other unacknowledged packets
		}
	}
}

// setup opens the pipeline of the current block, dropping nodes that
// cannot take part. Nothing has been written to the block yet.
func (w *Writer) setup() error {
	var tried []string
	for len(w.lb.Locations) > 0 {
		pl, bad, err := openPipeline(w.lb, w.chunk, w.c.opts.Name, w.stage, w.sent, w.c.opts.AckTimeout)
		if err == nil {
			w.pl = pl
			return w.commitAppend()
		}
		tried = append(tried, err.Error())
		if bad < 0 || bad >= len(w.lb.Locations) || w.stage != stageCreate && len(w.lb.Locations) == 1 {
			break
		}
		w.dropNode(bad, err)
	}
	msg := "no blockd to write to"
	if len(tried) > 0 {
		msg = fmt.Sprintf("no blockd of the pipeline could take the block: %v", tried)
	}
	return cairn.E("client.Write", cairn.KindIO, w.path, fmt.Sprintf("%s: %s", w.lb.Block, msg))
}

// commitAppend records at metad the new stamp and the nodes of an append
// pipeline just set up, before any byte is sent through it.
func (w *Writer) commitAppend() error {
	if w.appendFrom == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
	defer cancel()
	updated := w.lb.Block
	updated.Len = w.sent
	if err := w.c.NS.UpdatePipeline(ctx, w.ref(), *w.appendFrom, updated, w.lb.Locations); err != nil {
		w.pl.close()
		w.pl = nil
		return err
	}
	w.appendFrom = nil
	return nil
}

func (w *Writer) dropNode(i int, why error) {
	n := w.lb.Locations[i]
	w.c.log.Warn("dropping a blockd from the pipeline", zap.String("path", w.path), zap.Stringer("block", w.lb.Block),
		zap.String("blockd", n.DataAddr), zap.Error(why))
	w.excluded = append(w.excluded, n)
	w.lb.Locations = append(w.lb.Locations[:i:i], w.lb.Locations[i+1:]...)
}

// recover rebuilds a broken pipeline: the failed node is dropped, the block
// gets a new generation stamp, a node is added back when too few remain
// (HDFS's replace-datanode-on-failure DEFAULT policy), the survivors keep
// what every one of them acknowledged, and the unacknowledged packets are
// sent again.
func (w *Writer) recover(cause error) error { return w.recoverWith(cause, nil) }

// recoverWith is recover, with packets not yet handed to the broken
// pipeline to send after its unacknowledged ones.
func (w *Writer) recoverWith(cause error, extra []packet) error {
	old := w.pl
	if old == nil {
		return cause
	}
	old.close()
	w.pl = nil
	unacked, acked := old.pending()
	unacked = append(unacked, extra...)
	bad := 0
	var pe *pipelineError
	if errors.As(cause, &pe) && pe.bad >= 0 && pe.bad < len(w.lb.Locations) {
		bad = pe.bad
	}
	w.dropNode(bad, cause)
	if len(w.lb.Locations) == 0 {
		return cairn.E("client.Write", cairn.KindIO, w.path, fmt.Sprintf("%s: every blockd of the pipeline failed; last: %v", w.lb.Block, cause))
	}
	ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
	defer cancel()
	oldBlock := w.lb.Block
	gs, err := w.c.NS.UpdateBlockForPipeline(ctx, w.ref(), oldBlock)
	if err != nil {
		return err
	}
	added := false
	for {
		if want := w.fi.Replication; !added && len(w.lb.Locations) < want && len(w.lb.Locations) <= want/2 && want >= 3 {
			added = true
			w.addNode(ctx, gs, acked)
		}
		lb := *w.lb
		lb.GenStamp = gs
		pl, badSetup, err := openPipeline(&lb, w.chunk, w.c.opts.Name, stageRecovery, acked, w.c.opts.AckTimeout)
		if err == nil {
			w.pl = pl
			break
		}
		if badSetup < 0 || badSetup >= len(w.lb.Locations) || len(w.lb.Locations) == 1 {
			return cairn.E("client.Write", cairn.KindIO, w.path, fmt.Sprintf("%s: pipeline recovery failed: %v", w.lb.Block, err))
		}
		w.dropNode(badSetup, err)
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
				return w.recoverWith(err, unacked[i:])
			}
			return w.recoverWith(err, unacked[i+1:])
		}
	}
	return nil
}

// addNode asks metad for another blockd and has a survivor copy the
// acknowledged bytes to it. Failing that, writing goes on without it.
func (w *Writer) addNode(ctx context.Context, gs cairn.GenStamp, acked int64) {
	n, err := w.c.NS.AdditionalNode(ctx, w.ref(), w.lb.Block, w.lb.Locations, w.excluded)
	if err != nil {
		w.c.log.Info("no blockd to add to the pipeline", zap.String("path", w.path), zap.Error(err))
		return
	}
	var errs []error
	for _, src := range w.lb.Locations {
		err := transfer(w.lb.Block, src, n, gs, acked, w.chunk, w.c.opts.Name)
		if err == nil {
			w.lb.Locations = append(w.lb.Locations, n)
			return
		}
		errs = append(errs, fmt.Errorf("from %s: %w", src.DataAddr, err))
	}
	w.c.log.Warn("could not bring a new blockd up to date", zap.String("blockd", n.DataAddr), zap.Error(errors.Join(errs...)))
	w.excluded = append(w.excluded, n)
}

// Flush (hflush) sends what is buffered and waits until every node of the
// pipeline has it; then new readers see it.
func (w *Writer) Flush() error { return w.sync(0) }

// Sync (hsync) is Flush that also has every node of the pipeline put the
// bytes on its disk.
func (w *Writer) Sync() error { return w.sync(flagSync) }

func (w *Writer) sync(flags uint8) error {
	if w.closed {
		return cairn.E("client.Sync", cairn.KindInvalid, w.path, "writer is closed")
	}
	if w.err != nil {
		return w.err
	}
	if w.lb == nil && len(w.buf) == 0 {
		return nil // everything written is in finalized blocks
	}
	if err := w.flushPacket(flags, false); err != nil {
		return err
	}
	if w.lb == nil {
		return nil // the packet ended its block
	}
	if err := w.waitAcked(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
	defer cancel()
	b := w.lb.Block
	b.Len = w.sent
	if err := w.c.NS.Fsync(ctx, w.ref(), b); err != nil {
		return w.fail(err)
	}
	return nil
}

// Close sends what is buffered, waits until every byte is acknowledged by
// the pipeline and completes the file at metad. A second Close returns the
// first one's result.
func (w *Writer) Close() error {
	if w.closed {
		return w.closeErr
	}
	w.closeErr = w.close()
	w.closed = true
	w.leases()
	return w.closeErr
}

func (w *Writer) close() error {
	if w.err != nil {
		return w.err
	}
	if w.lb != nil || len(w.buf) > 0 {
		// End the block here, with an empty last packet if need be (after
		// an append of nothing it moves the replicas to the new stamp).
		if err := w.flushPacket(0, true); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), completeTimeout)
	defer cancel()
	delay := 20 * time.Millisecond
	for {
		err := w.c.NS.Complete(ctx, w.ref(), w.prev)
		if err == nil {
			return nil
		}
		if cairn.KindOf(err) != cairn.KindRetry {
			return err
		}
		select {
		case <-ctx.Done():
			return cairn.E("client.Close", cairn.KindIO, w.path, fmt.Sprintf("metad did not accept the file as complete within %s: %v", completeTimeout, err))
		case <-time.After(delay):
		}
		delay = min(2*delay, time.Second)
	}
}
