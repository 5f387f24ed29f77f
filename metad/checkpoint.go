package metad

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"go.uber.org/zap"

	"cairn"
	"cairn/internal/versionfile"
)

// Checkpoints: the secondary NameNode's job without a second daemon. A
// checkpoint is a directory holding a Pebble checkpoint of the store
// (pebble/: hard links to the immutable tables, copies of the WAL and
// MANIFEST) and, written last, a VERSION like the data directory's plus
// checkpointTime. Every mutation is one Pebble batch, so a checkpoint holds
// each one whole or not at all: it is the namespace at one moment.

// Defaults of periodic checkpoints: hourly, the two newest kept (HDFS's
// dfs.namenode.checkpoint.period and num.checkpoints.retained).
const (
	DefaultCheckpointInterval = time.Hour
	DefaultCheckpointKeep     = 2
)

// checkpointPrefix names the checkpoints of a periodic checkpoint directory.
const checkpointPrefix = "checkpoint-"

// Checkpoint writes a checkpoint to dir on metad's machine while metad
// serves. Only a superuser may; dir must be an absolute path that does not
// exist yet, in an existing directory. Asked for over RPC, dir must lie
// under Config.CheckpointRoot (a relative dir is taken from there), so no
// caller makes metad write anywhere else on its machine.
func (m *Metad) Checkpoint(ctx context.Context, dir string) error {
	const op = "metad.Checkpoint"
	c, err := m.callerOf(ctx, op)
	if err != nil {
		return err
	}
	if !c.super {
		return cairn.E(op, cairn.KindPermission, dir, fmt.Sprintf("user=%s: only a superuser may write a checkpoint", c.user))
	}
	if ctx.Value(remoteKey{}) != nil {
		if dir, err = m.underCheckpointRoot(op, dir); err != nil {
			return err
		}
	}
	if !filepath.IsAbs(dir) || filepath.Clean(dir) != dir || strings.IndexByte(dir, 0) >= 0 {
		return cairn.E(op, cairn.KindInvalid, dir, "a checkpoint directory must be an absolute, clean path on metad's machine")
	}
	if _, err := os.Lstat(dir); err == nil {
		return cairn.E(op, cairn.KindExist, dir, "a checkpoint goes to a new directory")
	} else if !errors.Is(err, fs.ErrNotExist) {
		return &cairn.Error{Op: op, Path: dir, Kind: cairn.KindIO, Err: err}
	}
	if fi, err := os.Stat(filepath.Dir(dir)); err != nil || !fi.IsDir() {
		return cairn.E(op, cairn.KindNotExist, dir, fmt.Sprintf("%s is not a directory on metad's machine", filepath.Dir(dir)))
	}
	start := time.Now()
	if err := m.checkpointTo(dir); err != nil {
		return &cairn.Error{Op: op, Path: dir, Kind: cairn.KindIO, Err: err}
	}
	m.log.Info("checkpoint written", zap.String("dir", dir), zap.Duration("took", time.Since(start)))
	return nil
}

// underCheckpointRoot returns dir, taken from Config.CheckpointRoot when
// relative, if it lies under that root (symbolic links resolved);
// otherwise a KindPermission error. The root is made if missing.
func (m *Metad) underCheckpointRoot(op, dir string) (string, error) {
	root := filepath.Clean(m.cfg.CheckpointRoot)
	refuse := cairn.E(op, cairn.KindPermission, dir, fmt.Sprintf("a checkpoint goes only under metad's checkpoint directory %s (--checkpoint-dir)", root))
	if strings.IndexByte(dir, 0) >= 0 {
		return "", refuse
	}
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(root, dir)
	}
	dir = filepath.Clean(dir)
	if !within(root, dir) {
		return "", refuse
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return "", &cairn.Error{Op: op, Path: root, Kind: cairn.KindIO, Err: err}
	}
	realRoot, err1 := filepath.EvalSymlinks(root)
	realParent, err2 := filepath.EvalSymlinks(filepath.Dir(dir))
	if err1 == nil && err2 == nil && !within(realRoot, filepath.Join(realParent, filepath.Base(dir))) {
		return "", refuse
	}
	return dir, nil
}

// within reports whether path lies strictly under root (both clean).
func within(root, path string) bool {
	rel, err := filepath.Rel(root, path)
	return err == nil && rel != "." && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

// checkpointTo writes a checkpoint to dir, which must not exist.
func (m *Metad) checkpointTo(dir string) error {
	if err := os.Mkdir(dir, 0o755); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	if err := m.st.db.Checkpoint(filepath.Join(dir, storeDir), pebble.WithFlushedWAL()); err != nil {
		_ = os.RemoveAll(dir)
		return fmt.Errorf("checkpoint to %s: %w", dir, err)
	}
	v := maps.Clone(m.version)
	v["checkpointTime"] = m.clock.Now().UTC().Format(time.RFC3339Nano)
	if err := versionfile.Write(dir, v); err != nil {
		_ = os.RemoveAll(dir)
		return fmt.Errorf("checkpoint to %s: %w", dir, err)
	}
	return nil
}

// periodicCheckpoint writes a checkpoint into Config.CheckpointDir, under
// a temporary name renamed once complete, and removes all but the newest
// CheckpointKeep (and any temporary left by a crash).
func (m *Metad) periodicCheckpoint() (string, error) {
	root := m.cfg.CheckpointDir
	if err := os.MkdirAll(root, 0o755); err != nil {
		return "", fmt.Errorf("checkpoint directory: %w", err)
	}
	base := checkpointPrefix + m.clock.Now().UTC().Format("20060102T150405.000Z")
	name := base
	for i := 1; ; i++ {
		if _, err := os.Lstat(filepath.Join(root, name)); errors.Is(err, fs.ErrNotExist) {
			break
		}
		name = base + "-" + strconv.Itoa(i)
	}
	tmp := filepath.Join(root, ".tmp-"+name)
	if err := os.RemoveAll(tmp); err != nil {
		return "", err
	}
	if err := m.checkpointTo(tmp); err != nil {
		return "", err
	}
	final := filepath.Join(root, name)
	if err := os.Rename(tmp, final); err != nil {
		return "", fmt.Errorf("checkpoint: %w", err)
	}
	if err := syncDir(root); err != nil {
		return "", err
	}
	return final, m.pruneCheckpoints()
}

func (m *Metad) pruneCheckpoints() error {
	root := m.cfg.CheckpointDir
	es, err := os.ReadDir(root)
	if err != nil {
		return err
	}
	var ckpts []string
	for _, e := range es {
		switch {
		case strings.HasPrefix(e.Name(), ".tmp-"+checkpointPrefix):
			if err := os.RemoveAll(filepath.Join(root, e.Name())); err != nil {
				return err
			}
		case strings.HasPrefix(e.Name(), checkpointPrefix) && e.IsDir():
			ckpts = append(ckpts, e.Name())
		}
	}
	slices.Sort(ckpts) // names sort by time
	for len(ckpts) > m.cfg.CheckpointKeep {
		if err := os.RemoveAll(filepath.Join(root, ckpts[0])); err != nil {
			return err
		}
		m.log.Info("old checkpoint removed", zap.String("dir", filepath.Join(root, ckpts[0])))
		ckpts = ckpts[1:]
	}
	return nil
}

// runCheckpoints writes periodic checkpoints until ctx ends.
func (m *Metad) runCheckpoints(ctx context.Context) {
	if m.cfg.CheckpointDir == "" {
		return
	}
	t := time.NewTicker(m.cfg.CheckpointInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			m.leaderWork(func() {
				dir, err := m.periodicCheckpoint()
				if err != nil {
					m.log.Error("periodic checkpoint", zap.Error(err))
					return
				}
				m.log.Info("periodic checkpoint written", zap.String("dir", dir))
			})
		}
	}
}

// Restore makes dir a data directory holding the namespace of checkpoint
// ckpt, copied (not linked: the restored store will write its own files).
// A formatted dir is refused unless force is set. VERSION is written last,
// so a restore cut short leaves a directory metad does not take for one.
func Restore(ckpt, dir string, force bool) error {
	v, err := versionfile.Read(ckpt)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("restore: %s is not a checkpoint (no VERSION)", ckpt)
	}
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if v["storageType"] != "METAD" || v["namespaceID"] == "" {
		return fmt.Errorf("restore: %s is not a metad checkpoint (storageType %q, namespaceID %q)", ckpt, v["storageType"], v["namespaceID"])
	}
	if lv, _ := strconv.Atoi(v["layoutVersion"]); lv > LayoutVersion {
		return fmt.Errorf("restore: %s has layout version %d, newer than this metad's %d: run a newer cairn", ckpt, lv, LayoutVersion)
	}
	src := filepath.Join(ckpt, storeDir)
	if !hasManifest(src) {
		return fmt.Errorf("restore: %s holds no Pebble store", src)
	}
	if a, b := filepath.Clean(ckpt), filepath.Clean(dir); a == b {
		return fmt.Errorf("restore: the checkpoint and the data directory are both %s", a)
	}
	if old, err := versionfile.Read(dir); err == nil && !force {
		return fmt.Errorf("restore: %s is formatted for namespace %s; add --force to replace it", dir, old["namespaceID"])
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if err := os.Remove(filepath.Join(dir, versionfile.Name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("restore: %w", err)
	}
	tmp := filepath.Join(dir, storeDir+".restore")
	for _, p := range []string{filepath.Join(dir, storeDir), tmp} {
		if err := os.RemoveAll(p); err != nil {
			return fmt.Errorf("restore: %w", err)
		}
	}
	if err := copyStore(src, tmp); err != nil {
		return fmt.Errorf("restore from %s: %w", ckpt, err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, storeDir)); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if err := syncDir(dir); err != nil {
		return err
	}
	delete(v, "checkpointTime")
	v["restoredFrom"] = ckpt
	return versionfile.Write(dir, v)
}

// copyStore copies the files of a Pebble store, each fsynced, and then the
// directory.
func copyStore(src, dst string) error {
	es, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	if err := os.Mkdir(dst, 0o755); err != nil {
		return err
	}
	for _, e := range es {
		if e.Name() == "LOCK" {
			continue
		}
		if !e.Type().IsRegular() {
			return fmt.Errorf("%s: %s is not a regular file", src, e.Name())
		}
		if err := copyFile(filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())); err != nil {
			return err
		}
	}
	return syncDir(dst)
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		_ = out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		_ = out.Close()
		return err
	}
	return out.Close()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
