package rpc

import (
	"reflect"
	"testing"

	"google.golang.org/protobuf/proto"

	"cairn"
	"cairn/rpc/pb"
)

func TestFileReplicasRoundTrip(t *testing.T) {
	in := cairn.FileReplicas{Size: 1500, Writing: true, Replication: 3, Blocks: []cairn.BlockReplicas{{
		Block: cairn.Block{ID: 7, GenStamp: 9, Len: 1500}, Offset: 0, UnderConstruction: true,
		Replicas: []cairn.ReplicaInfo{{
			Node:    cairn.Node{StorageID: "DS-1", DataAddr: "127.0.0.1:9866", Rack: "/r"},
			Replica: cairn.Replica{Block: cairn.Block{ID: 7, GenStamp: 8, Len: 0}, State: cairn.ReplicaRWR},
			Live:    true, Stale: true, Corrupt: "stale generation stamp",
		}},
	}}}
	out, err := fromPBFileReplicas(toPBFileReplicas(in))
	if err != nil || !reflect.DeepEqual(in, out) {
		t.Fatalf("round trip: %+v, %v; want %+v", out, err, in)
	}
}

// FuzzFileReplicas: whatever metad's answer holds, its conversion either
// fails with ErrInvalid or gives replicas of known states; it never panics.
func FuzzFileReplicas(f *testing.F) {
	seed, _ := proto.Marshal(toPBFileReplicas(cairn.FileReplicas{Size: 1, Blocks: []cairn.BlockReplicas{{
		Block: cairn.Block{ID: 1, GenStamp: 2, Len: 1}, Replicas: []cairn.ReplicaInfo{{Node: cairn.Node{StorageID: "s"}, Replica: cairn.Replica{State: cairn.ReplicaFinalized}}},
	}}}))
	f.Add(seed)
	f.Add([]byte{0x22, 0x02, 0x22, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		m := &pb.FileReplicas{}
		if proto.Unmarshal(b, m) != nil {
			return
		}
		fr, err := fromPBFileReplicas(m)
		if err != nil {
			if cairn.KindOf(err) != cairn.KindInvalid {
				t.Fatalf("error of kind %v: %v", cairn.KindOf(err), err)
			}
			return
		}
		for _, blk := range fr.Blocks {
			for _, r := range blk.Replicas {
				if r.State < cairn.ReplicaFinalized || r.State > cairn.ReplicaRUR {
					t.Fatalf("replica of unknown state %v accepted", r.State)
				}
			}
		}
	})
}
