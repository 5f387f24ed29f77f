package metad

import (
	"context"
	"io/fs"

	"cairn"
)

func notYet(op string) error { return cairn.E(op, cairn.KindInvalid, "", "not supported yet") }

func (m *Metad) SetAttr(ctx context.Context, path string, a cairn.Attr) (cairn.FileInfo, error) {
	return cairn.FileInfo{}, notYet("metad.SetAttr")
}

func (m *Metad) Symlink(ctx context.Context, target, path string) error {
	return notYet("metad.Symlink")
}

func (m *Metad) Mknod(ctx context.Context, path string, mode fs.FileMode) error {
	return notYet("metad.Mknod")
}

func (m *Metad) SetXattr(ctx context.Context, path, name string, value []byte, flags cairn.XattrFlags) error {
	return notYet("metad.SetXattr")
}

func (m *Metad) GetXattr(ctx context.Context, path, name string) ([]byte, error) {
	return nil, notYet("metad.GetXattr")
}

func (m *Metad) ListXattrs(ctx context.Context, path string) ([]string, error) {
	return nil, notYet("metad.ListXattrs")
}

func (m *Metad) RemoveXattr(ctx context.Context, path, name string) error {
	return notYet("metad.RemoveXattr")
}

func (m *Metad) ContentSummary(ctx context.Context, path string) (cairn.ContentSummary, error) {
	return cairn.ContentSummary{}, notYet("metad.ContentSummary")
}

func (m *Metad) RenewLease(ctx context.Context, client string) error {
	return notYet("metad.RenewLease")
}

func (m *Metad) Checkpoint(ctx context.Context, dir string) error {
	return notYet("metad.Checkpoint")
}
