package client

import (
	"bufio"
	"context"
	"fmt"
	"time"

	"cairn"
	"cairn/rpc"
	"cairn/rpc/pb"
	"cairn/xfer"
)

// verifyTimeout bounds a VERIFY_BLOCK when ctx has no deadline: the blockd
// reads the whole replica, possibly at its scanner's rate.
const verifyTimeout = 10 * time.Minute

// Verified is a blockd's answer to VERIFY_BLOCK.
type Verified struct {
	// State and GenStamp of the replica the blockd holds, when it said.
	State    cairn.ReplicaState
	GenStamp cairn.GenStamp
	// Bad says why the replica is bad; "" when it is sound.
	Bad string
}

// VerifyReplica asks the blockd node to re-read its replica of b against
// its .meta (xfer's VERIFY_BLOCK), with token (a read token for b from
// ReplicaReport). A replica the blockd finds bad, or does not have, is a
// Verified with Bad set; an error means the blockd could not be asked,
// did not answer, or refused the token.
func (c *Client) VerifyReplica(ctx context.Context, node cairn.Node, b cairn.Block, token []byte) (Verified, error) {
	const op = "client.VerifyReplica"
	conn, err := c.dataDial(ctx)(ctx, node.DataAddr, 10*time.Second)
	if err != nil {
		return Verified{}, cairn.E(op, cairn.KindIO, "", fmt.Sprintf("%s on %s: %v", b, node.DataAddr, err))
	}
	defer conn.Close()
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(verifyTimeout)
	}
	_ = conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()

	bw := bufio.NewWriter(conn)
	err = xfer.WriteOp(bw, &pb.OpHeader{Op: pb.OpHeader_VERIFY_BLOCK, Block: rpc.ToPBBlock(&b), Token: token})
	if err == nil {
		err = bw.Flush()
	}
	var rep *pb.OpReply
	if err == nil {
		rep, err = xfer.ReadReply(bufio.NewReader(conn))
	}
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return Verified{}, cairn.E(op, cairn.KindIO, "", fmt.Sprintf("%s on %s: no answer: %v", b, node.DataAddr, err))
	}
	if k := cairn.Kind(rep.Status); k == cairn.KindAccess || k == cairn.KindRetry {
		// Refused, not verified: says nothing of the replica.
		return Verified{}, cairn.E(op, k, "", fmt.Sprintf("%s on %s: %s", b, node.DataAddr, rep.Message))
	}
	v := Verified{State: cairn.ReplicaState(rep.ReplicaState), GenStamp: cairn.GenStamp(rep.GenStamp)}
	if rep.Status != 0 {
		v.Bad = rep.Message
		if v.Bad == "" {
			v.Bad = fmt.Sprintf("bad replica (status %d)", rep.Status)
		}
	}
	return v, nil
}
