package rpc

import (
	"context"
	"testing"

	"google.golang.org/protobuf/proto"

	"cairn"
	"cairn/rpc/pb"
)

// FuzzReplicaList: a block report or a commit of a block recovery as any
// peer may send it is decoded without a panic, and every replica it yields
// has a block and a known state.
func FuzzReplicaList(f *testing.F) {
	seed := &pb.ReplicaList{StorageId: "DS-1", Replicas: []*pb.Replica{
		{Block: &pb.Block{Id: 1, GenStamp: 1001, Len: 5}, State: int32(cairn.ReplicaRBW)},
		{Block: &pb.Block{Id: 2, GenStamp: 1002}, State: int32(cairn.ReplicaFinalized)},
	}}
	b, _ := proto.Marshal(seed)
	f.Add(b)
	bad, _ := proto.Marshal(&pb.ReplicaList{Replicas: []*pb.Replica{{State: 9}}})
	f.Add(bad)
	cs, _ := proto.Marshal(&pb.CommitSyncRequest{Block: &pb.Block{Id: 3, GenStamp: 1}, RecoveryId: 7, NewGenStamp: 7, NewLen: 10, Nodes: []string{"DS-1"}})
	f.Add(cs)
	f.Fuzz(func(t *testing.T, data []byte) {
		l := &pb.ReplicaList{}
		if proto.Unmarshal(data, l) == nil {
			reps, err := FromPBReplicas("fuzz", l.Replicas)
			if err == nil {
				for _, r := range reps {
					if r.State < cairn.ReplicaFinalized || r.State > cairn.ReplicaRUR {
						t.Fatalf("accepted state %d", r.State)
					}
				}
			} else if cairn.KindOf(err) != cairn.KindInvalid {
				t.Fatalf("refusal of kind %v: %v", cairn.KindOf(err), err)
			}
		}
		c := &pb.CommitSyncRequest{}
		if proto.Unmarshal(data, c) == nil {
			_, _ = (&registryServer{r: nopRegistry{}}).CommitBlockSynchronization(t.Context(), c)
		}
	})
}

// nopRegistry accepts everything, for the server adapter's own checks.
type nopRegistry struct{ cairn.Registry }

func (nopRegistry) CommitBlockSynchronization(ctx context.Context, c cairn.CommitSync) error {
	return nil
}
