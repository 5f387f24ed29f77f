package client

import (
	"context"
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
// with the others, a node is added back when too few remain, and the
// caller sees an error only when no replica can take the data. Each block
// has its pipeline set up by the Write that brings its first byte, so a
// cluster with no room refuses that Write. After a fatal error the file is
// closed at the bytes every node acknowledged (giveUp). It is not safe for
// concurrent use.
type Writer struct {
	c      *Client
	path   string
	fi     cairn.FileInfo
	chunk  int
	packet int // bytes of data per packet
	to     timeouts

	// The block being written: lb (nil between blocks), sent = block
	// offset where buf starts, buf = bytes not yet sent.
	lb       *cairn.LocatedBlock
	stage    stage // how the next pipeline takes its replicas
	pl       *pipeline
	sent     int64
	buf      []byte
	prev     *cairn.Block // the last finished block
	prevAck  []cairn.Node // the nodes that acked prev's last packet: it is finalized on each
	excluded []exclusion  // blockds that failed this writer, for a while
	// appendFrom is the last block as metad records it until the append
	// pipeline is set up and its new stamp committed.
	appendFrom *cairn.Block
	// claim: the file was created closed (Client.CreateClosed) and this
	// writer holds no lease yet; its first AddBlock claims it.
	claim bool
	// unsynced: metad answered an AddBlock (which it does not sync by
	// itself) and no synced call of this writer followed yet; an hflush or
	// hsync makes one before it returns.
	unsynced bool

	// Of the current block: acked is the offset every node of the last
	// pipeline acknowledged; dropped the nodes that left its pipeline and
	// failures why; flushed (hflush, hsync) and appended make a lost node
	// worth replacing (replaceNode); refillAt is when to try again to add
	// a node to a pipeline that is short of one.
	acked      int64
	dropped    []cairn.Node
	failures   []failure
	flushed    bool
	appended   bool
	refillAt   time.Time
	refillWait time.Duration

	size     int64 // bytes accepted by Write
	err      error // sticky: the first failure
	closed   bool
	closeErr error
	leases   func() // ends this writer's lease renewal
}

func newWriter(c *Client, path string, fi cairn.FileInfo) *Writer {
	chunk := checksum.DefaultChunkSize
	w := &Writer{c: c, path: path, fi: fi, chunk: chunk, packet: max(1, packetTarget/chunk) * chunk,
		to: newTimeouts(c.opts.SetupTimeout, c.opts.AckTimeout)}
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
		ulb, err := c.NS.UpdateBlockForPipeline(rctx, w.ref(), last.Block)
		if err != nil {
			w.leases()
			return nil, err
		}
		old := last.Block
		w.appendFrom = &old
		last.GenStamp, last.Token = ulb.GenStamp, ulb.Token
		w.lb = last
		w.sent, w.acked = last.Len, last.Len
		w.stage = stageAppend
		w.appended = true
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

// Info describes the file as metad answered the Create or Append that
// opened it.
func (w *Writer) Info() cairn.FileInfo { return w.fi }

// Size is the size of the file with every byte accepted so far.
func (w *Writer) Size() int64 { return w.size }

// Write appends p to the file. Bytes are sent a packet at a time; an error
// from the pipelines is returned by a later Write or by Close. The first
// byte of a block waits for its pipeline to be set up, so a Write into a
// cluster with no room fails (KindNoSpace) rather than a later close.
func (w *Writer) Write(p []byte) (int, error) {
	if w.closed {
		return 0, cairn.E("client.Write", cairn.KindInvalid, w.path, "writer is closed")
	}
	if w.err != nil {
		return 0, w.err
	}
	n := 0
	for len(p) > 0 {
		if w.pl == nil {
			if err := w.open(); err != nil {
				return n, w.fail(err)
			}
		}
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
		if err := w.startBlock(); err != nil {
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
	w.prevAck = nil
	if w.pl != nil {
		w.prevAck = append([]cairn.Node(nil), w.pl.lb.Locations...)
		w.pl.close()
		w.pl = nil
	}
	b := w.lb.Block
	b.Len = w.sent
	w.prev = &b
	w.lb, w.sent, w.stage = nil, 0, stageCreate
	w.acked, w.dropped, w.failures, w.flushed, w.appended, w.refillAt, w.refillWait = 0, nil, nil, false, false, time.Time{}, 0
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

// fail records the writer's first fatal error and closes the file at what
// was acknowledged (giveUp); later calls return that first error.
func (w *Writer) fail(err error) error {
	if w.err != nil {
		return w.err
	}
	w.err = err
	w.c.log.Warn("write failed", zap.String("path", w.path), zap.Error(err))
	if w.pl != nil {
		_, w.acked = w.pl.pending()
		w.pl.close()
		w.pl = nil
	}
	w.giveUp()
	return w.err
}

// open sets up the pipeline the next byte goes through: a new block's, or
// that of the block an append continues.
func (w *Writer) open() error {
	if w.lb == nil {
		return w.startBlock()
	}
	return w.setup()
}

// blockRetries is how many blocks a writer asks for in a row when a node
// of each new pipeline fails its setup (HDFS's
// dfs.client.block.write.retries); the last one is written with the nodes
// that remain.
const blockRetries = 3

// startBlock asks metad for the next block and sets up its pipeline. A
// node that fails the setup is excluded and the block abandoned for
// another, so a new block starts with a full pipeline when the cluster
// has the nodes.
func (w *Writer) startBlock() error {
	for attempt := 1; ; attempt++ {
		if err := w.newBlock(); err != nil {
			return err
		}
		if attempt == blockRetries {
			return w.setup()
		}
		pl, bad, err := openPipeline(w.c.dataDial(context.Background()), w.lb, w.chunk, w.c.opts.Name, w.stage, w.sent, w.to)
		if err == nil {
			w.pl = pl
			return nil
		}
		if bad < 0 || bad >= len(w.lb.Locations) {
			bad = 0
		}
		w.dropNode(bad, err)
		ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
		aerr := w.c.NS.AbandonBlock(ctx, w.ref(), w.lb.Block)
		cancel()
		if aerr != nil {
			return aerr
		}
		w.c.log.Info("abandoned a block whose pipeline could not be set up", zap.String("path", w.path),
			zap.Stringer("block", w.lb.Block), zap.Error(err))
		w.lb = nil
	}
}

// newBlock asks metad for the next block and its pipeline (addBlock),
// within rpcTimeout.
func (w *Writer) newBlock() error {
	ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
	defer cancel()
	return w.addBlock(ctx)
}

// Waits between AddBlocks that metad answered KindRetry: the first, then
// doubling up to the last.
const (
	addBlockFirstWait = 100 * time.Millisecond
	addBlockMaxWait   = time.Second
)

// addBlock asks metad for the next block and its pipeline, avoiding the
// blockds that failed this writer lately. When metad has no other blockd
// it asks once more without those that did not hang (a restarted blockd
// is back soon). While metad answers KindRetry (a new leader, or a metad
// just started, that no blockd has reached yet: metad/pipeline.go) it asks
// again, after addBlockFirstWait doubling to addBlockMaxWait, until ctx
// ends, as HDFS's client retries addBlock (locateFollowingBlock). Each try
// names the same previous block: one that metad had answered, its answer
// lost, gets the block it allocated then (metad/replayed.go), and a
// KindRetry answer changed nothing at metad.
func (w *Writer) addBlock(ctx context.Context) error {
	excl := w.exclusions(true)
	ref := w.ref()
	ref.Claim = w.claim
	wait := addBlockFirstWait
	var lb cairn.LocatedBlock
	var err error
	for {
		lb, err = w.c.NS.AddBlock(ctx, ref, w.prev, excl)
		kind := cairn.KindOf(err)
		if (kind == cairn.KindNoSpace || kind == cairn.KindRetry) && len(excl) > 0 {
			if fewer := w.exclusions(false); len(fewer) < len(excl) {
				w.c.log.Info("no blockd beside those that failed this writer; trying them again",
					zap.String("path", w.path), zap.Error(err))
				excl = fewer
				continue
			}
		}
		if kind != cairn.KindRetry {
			break
		}
		log := w.c.log.Debug
		if wait == addBlockFirstWait {
			log = w.c.log.Info
		}
		log("metad has no blockd for a new block yet; asking again", zap.String("path", w.path),
			zap.Duration("after", wait), zap.Error(err))
		select {
		case <-ctx.Done():
			w.failures = append(w.failures, failure{node: "metad", kind: cairn.KindRetry, why: err.Error()})
			return w.lostErr(cairn.Block{}, "no blockd reached metad in time for a new block", err)
		case <-time.After(wait):
		}
		wait = min(2*wait, addBlockMaxWait)
	}
	if cairn.KindOf(err) == cairn.KindNoSpace {
		w.failures = append(w.failures, failure{node: "metad", kind: cairn.KindNoSpace, why: err.Error()})
		return w.lostErr(cairn.Block{}, "no blockd can take a new block", err)
	}
	if err != nil {
		return err
	}
	w.claim, w.unsynced = false, true
	w.lb, w.sent, w.stage, w.acked = &lb, 0, stageCreate, 0
	return nil
}

// send hands one packet to the pipeline, setting one up, recovering it,
// or adding a node to it, as needed.
func (w *Writer) send(p packet) error {
	if w.pl != nil && !w.refillAt.IsZero() && time.Now().After(w.refillAt) {
		if err := w.refill(); err != nil {
			return err
		}
	}
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
	for len(w.lb.Locations) > 0 {
		pl, bad, err := openPipeline(w.c.dataDial(context.Background()), w.lb, w.chunk, w.c.opts.Name, w.stage, w.sent, w.to)
		if err == nil {
			w.pl = pl
			return w.commitAppend()
		}
		if bad < 0 || bad >= len(w.lb.Locations) || w.stage != stageCreate && len(w.lb.Locations) == 1 {
			w.failures = append(w.failures, failureOf("", err))
			return w.lostErr(w.lb.Block, "no blockd of the pipeline could take the block", err)
		}
		w.dropNode(bad, err)
	}
	return w.lostErr(w.lb.Block, "no blockd of the pipeline could take the block", nil)
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
		return w.syncFinished() // everything written is in finalized blocks
	}
	if err := w.flushPacket(flags, false); err != nil {
		return err
	}
	if w.lb == nil {
		return w.syncFinished() // the packet ended its block
	}
	if err := w.waitAcked(); err != nil {
		return err
	}
	w.flushed = true
	b := w.lb.Block
	b.Len = w.sent
	return w.fsync(b)
}

// syncFinished makes metad's record of the writer's blocks durable when
// every byte written is in finalized blocks: the last block's AddBlock may
// not be synced yet, and a crash of metad would lose the block, bytes and
// all (its replicas would be of no file).
func (w *Writer) syncFinished() error {
	if !w.unsynced || w.prev == nil {
		return nil
	}
	return w.fsync(*w.prev)
}

// fsync records at metad that the file's last block holds b.Len bytes, in
// a synced batch (Fsync), which also makes every AddBlock before it
// durable.
func (w *Writer) fsync(b cairn.Block) error {
	ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
	defer cancel()
	if err := w.c.NS.Fsync(ctx, w.ref(), b); err != nil {
		return w.fail(err)
	}
	w.unsynced = false
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
	if w.claim {
		return nil // created closed and never written: complete already
	}
	ctx, cancel := context.WithTimeout(context.Background(), completeTimeout)
	defer cancel()
	return w.complete(ctx, w.prev, w.prevAck...)
}

// complete closes the file at metad with last as its last block, which
// the nodes acked finalized (their acks of its last packet prove it);
// without them it retries while metad has no replica report of it.
func (w *Writer) complete(ctx context.Context, last *cairn.Block, acked ...cairn.Node) error {
	delay := 20 * time.Millisecond
	for {
		err := w.c.NS.Complete(ctx, w.ref(), last, acked...)
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
