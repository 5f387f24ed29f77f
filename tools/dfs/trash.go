package dfs

import (
	"fmt"
	"path"
	"strconv"
	"strings"
	"time"

	"cairn"
)

// The trash, as HDFS's TrashPolicyDefault: off unless metad runs with
// --trash-interval (fs.trash.interval, minutes); then -rm moves a path to
// /user/$USER/.Trash/Current/<its full path>, -expunge (and metad's
// emptier, every interval) renames Current to a checkpoint named by the
// time (yyMMddHHmmss) and deletes the checkpoints older than the interval.
const (
	trashDir     = ".Trash"
	trashCurrent = "Current"
	// checkpointLayout is TrashPolicyDefault's CHECKPOINT format.
	checkpointLayout = "060102150405"
)

// trashRoot is the user's trash directory.
func (s *shell) trashRoot() string { return cairn.Join(s.home, trashDir) }

// trashInterval asks metad how long trash is kept (0: trash is off).
func (s *shell) trashInterval() (time.Duration, error) {
	d, err := s.cl.ServerDefaults(s.ctx)
	if err != nil {
		return 0, err
	}
	return d.TrashInterval, nil
}

// moveToTrash moves it to the trash when trash is on, as
// Trash.moveToAppropriateTrash; false when the caller should delete it
// (trash off, or it is in the trash already).
func (s *shell) moveToTrash(it item) (bool, error) {
	iv, err := s.trashInterval()
	if err != nil || iv <= 0 {
		return false, err
	}
	root := s.trashRoot()
	if it.abs == root || strings.HasPrefix(it.abs, root+"/") {
		return false, nil
	}
	if strings.HasPrefix(root, it.abs+"/") || it.abs == "/" {
		return false, hadoopMsg(fmt.Sprintf("Failed to move to trash: %s: Cannot move \"%s\" to the trash, as it contains the trash. Consider using -skipTrash option", it.disp, it.abs))
	}
	dst := path.Join(root, trashCurrent, it.abs)
	if err := s.ns().Mkdirs(s.ctx, path.Dir(dst), 0o700); err != nil {
		return false, perr(it.disp, err)
	}
	if _, err := s.ns().Stat(s.ctx, dst); err == nil {
		// A name already in the trash: keep both, as HDFS does.
		dst += strconv.FormatInt(time.Now().UnixMilli(), 10)
	}
	if err := s.ns().Rename(s.ctx, it.abs, dst); err != nil {
		return false, perr(it.disp, err)
	}
	fmt.Fprintf(s.out, "Moved: '%s' to trash at: %s\n", it.abs, dst)
	return true, nil
}

// expunge is -expunge [-immediate]: checkpoint Current, then delete the
// checkpoints older than the interval (every one with -immediate).
func (s *shell) expunge(args []string) error {
	o, err := parse(args, 0, 0, words("immediate"))
	if err != nil {
		return err
	}
	if _, err := s.client(); err != nil {
		return err
	}
	iv, err := s.trashInterval()
	if err != nil {
		return err
	}
	if iv <= 0 && !o.has("immediate") {
		return nil
	}
	root := s.trashRoot()
	if _, err := s.ns().Stat(s.ctx, root); err != nil {
		return nil
	}
	now := time.Now()
	fmt.Fprintf(s.out, "TrashPolicyDefault#deleteCheckpoint for trashRoot: %s\n", root)
	es, err := s.cl.ReadDir(s.ctx, root)
	if err != nil {
		return perr(root, err)
	}
	for _, e := range es {
		if e.Name == trashCurrent || !e.IsDir() {
			continue
		}
		t, err := time.ParseInLocation(checkpointLayout, e.Name, time.Local)
		if err != nil {
			continue // not a checkpoint
		}
		if o.has("immediate") || now.Sub(t) > iv {
			if err := s.ns().Delete(s.ctx, cairn.Join(root, e.Name), true); err != nil {
				s.fail(perr(cairn.Join(root, e.Name), err))
				continue
			}
			fmt.Fprintf(s.out, "Deleted trash checkpoint: %s\n", cairn.Join(root, e.Name))
		}
	}
	cur := cairn.Join(root, trashCurrent)
	if _, err := s.ns().Stat(s.ctx, cur); err != nil {
		return nil
	}
	cp := cairn.Join(root, now.Format(checkpointLayout))
	if o.has("immediate") {
		if err := s.ns().Delete(s.ctx, cur, true); err != nil {
			return perr(cur, err)
		}
		return nil
	}
	if err := s.ns().Rename(s.ctx, cur, cp); err != nil {
		return perr(cur, err)
	}
	fmt.Fprintf(s.out, "Created trash checkpoint: %s\n", cp)
	return nil
}
