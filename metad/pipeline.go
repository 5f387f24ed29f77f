package metad

import (
	"context"

	"cairn"
)

func (m *Metad) Append(ctx context.Context, path, client string) (cairn.FileInfo, *cairn.LocatedBlock, error) {
	return cairn.FileInfo{}, nil, notYet("metad.Append")
}

func (m *Metad) AbandonBlock(ctx context.Context, path, client string, b cairn.Block) error {
	return notYet("metad.AbandonBlock")
}

func (m *Metad) Fsync(ctx context.Context, path, client string, b cairn.Block) error {
	return notYet("metad.Fsync")
}

func (m *Metad) UpdateBlockForPipeline(ctx context.Context, path, client string, b cairn.Block) (cairn.GenStamp, error) {
	return 0, notYet("metad.UpdateBlockForPipeline")
}

func (m *Metad) UpdatePipeline(ctx context.Context, path, client string, old, updated cairn.Block, nodes []cairn.Node) error {
	return notYet("metad.UpdatePipeline")
}

func (m *Metad) AdditionalNode(ctx context.Context, path, client string, b cairn.Block, existing, excluded []cairn.Node) (cairn.Node, error) {
	return cairn.Node{}, notYet("metad.AdditionalNode")
}

func (m *Metad) ReportBadReplicas(ctx context.Context, bad []cairn.BadReplica) error {
	return notYet("metad.ReportBadReplicas")
}

func (m *Metad) BlocksRecovering(ctx context.Context, id string, blocks []cairn.Block) error {
	return notYet("metad.BlocksRecovering")
}
