package metad

import (
	"context"
	"path"
	"time"

	"go.uber.org/zap"

	"cairn"
)

// The trash's emptier, HDFS's TrashPolicyDefault.Emptier: with
// --trash-interval set, every interval metad turns each user's
// /user/NAME/.Trash/Current into a checkpoint named by the time
// (yyMMddHHmmss, TrashPolicyDefault's CHECKPOINT format) and deletes the
// checkpoints older than the interval. Clients learn the interval from
// ServerDefaults; `cairn dfs -rm` moves paths into Current.
const (
	trashUsers       = "/user"
	trashDirName     = ".Trash"
	trashCurrentName = "Current"
	trashCheckpoint  = "060102150405"
)

// ServerDefaults answers how long the trash keeps paths (0: off).
func (m *Metad) ServerDefaults(context.Context) (time.Duration, error) {
	return m.cfg.TrashInterval, nil
}

// runTrashEmptier empties the trash every interval until ctx ends.
func (m *Metad) runTrashEmptier(ctx context.Context) {
	iv := m.cfg.TrashInterval
	if iv <= 0 {
		return
	}
	m.log.Info("trash emptier started", zap.Duration("interval", iv))
	t := time.NewTicker(iv)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			m.leaderWork(func() { m.emptyTrash(ctx, time.Now()) })
		}
	}
}

// emptyTrash is one round of the emptier at now: for each user's trash,
// delete expired checkpoints, then checkpoint Current.
func (m *Metad) emptyTrash(ctx context.Context, now time.Time) {
	users, _, err := m.List(ctx, trashUsers, "", 100000)
	if err != nil {
		if cairn.KindOf(err) != cairn.KindNotExist {
			m.log.Warn("trash emptier: cannot list home directories", zap.Error(err))
		}
		return
	}
	for _, u := range users {
		if !u.IsDir() {
			continue
		}
		root := path.Join(trashUsers, u.Name, trashDirName)
		es, _, err := m.List(ctx, root, "", 100000)
		if err != nil {
			continue // no trash
		}
		for _, e := range es {
			if e.Name == trashCurrentName || !e.IsDir() {
				continue
			}
			t, err := time.ParseInLocation(trashCheckpoint, e.Name, time.Local)
			if err != nil || now.Sub(t) <= m.cfg.TrashInterval {
				continue
			}
			p := path.Join(root, e.Name)
			if err := m.Delete(ctx, p, true); err != nil {
				m.log.Warn("trash emptier: cannot delete a checkpoint", zap.String("path", p), zap.Error(err))
				continue
			}
			m.log.Info("deleted trash checkpoint", zap.String("path", p))
		}
		cur := path.Join(root, trashCurrentName)
		if _, err := m.Stat(ctx, cur); err != nil {
			continue
		}
		cp := path.Join(root, now.Format(trashCheckpoint))
		if err := m.Rename(ctx, cur, cp); err != nil {
			m.log.Warn("trash emptier: cannot checkpoint", zap.String("path", cur), zap.Error(err))
			continue
		}
		m.log.Info("created trash checkpoint", zap.String("path", cp))
	}
}
