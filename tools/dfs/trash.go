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
		// TrashPolicyDefault's refusal, as Delete.Rm words it.
		return false, hadoopMsg(fmt.Sprintf("Cannot move \"%s\" to the trash, as it contains the trash. Consider using -skipTrash option", s.qualify(it.abs)))
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
	s.trashLog("Moved: '%s' to trash at: %s", s.qualify(it.abs), s.qualify(dst))
	return true, nil
}

// trashLog writes one of TrashPolicyDefault's messages as a Hadoop
// client shows them: log4j INFO lines on stderr (the console appender of
// Hadoop's log4j.properties, "%d{ISO8601} %p %c{2}: %m%n"), not output.
func (s *shell) trashLog(format string, args ...any) {
	fmt.Fprintf(s.errw, "%s INFO fs.TrashPolicyDefault: %s\n",
		time.Now().Format("2006-01-02 15:04:05,000"), fmt.Sprintf(format, args...))
}

// qualify is p as a fully qualified URI, as Hadoop's Path.makeQualified
// shows it (hdfs://nn:8020/p there, cairn://HOST:PORT/p here).
func (s *shell) qualify(p string) string { return "cairn://" + s.addr + p }

// expunge is -expunge [-immediate], as Hadoop's Delete.Expunge: without
// -immediate, delete the checkpoints older than the interval then
// checkpoint Current (Trash.expunge, Trash.checkpoint); with it,
// checkpoint Current then delete every checkpoint
// (Trash.expungeImmediately). Its messages are TrashPolicyDefault's log
// lines, on stderr.
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
		return nil // no trash root: TrashPolicyDefault has none to visit
	}
	now := time.Now()
	if o.has("immediate") {
		if err := s.createCheckpoint(root, now); err != nil {
			return err
		}
		return s.deleteCheckpoints(root, now, 0)
	}
	if err := s.deleteCheckpoints(root, now, iv); err != nil {
		return err
	}
	return s.createCheckpoint(root, now)
}

// deleteCheckpoints is TrashPolicyDefault.deleteCheckpoint: the
// checkpoints under root older than keep (every one when keep is 0).
// Hadoop logs the trash root twice (once per overload); so does this.
func (s *shell) deleteCheckpoints(root string, now time.Time, keep time.Duration) error {
	s.trashLog("TrashPolicyDefault#deleteCheckpoint for trashRoot: %s", s.qualify(root))
	s.trashLog("TrashPolicyDefault#deleteCheckpoint for trashRoot: %s", s.qualify(root))
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
		if keep > 0 && now.Sub(t) <= keep {
			continue
		}
		p := cairn.Join(root, e.Name)
		if err := s.ns().Delete(s.ctx, p, true); err != nil {
			s.fail(perr(p, err))
			continue
		}
		s.trashLog("Deleted trash checkpoint: %s", p)
	}
	return nil
}

// createCheckpoint is TrashPolicyDefault.createCheckpoint: Current
// renamed to the time's checkpoint name, when there is a Current.
func (s *shell) createCheckpoint(root string, now time.Time) error {
	s.trashLog("TrashPolicyDefault#createCheckpoint for trashRoot: %s", s.qualify(root))
	cur := cairn.Join(root, trashCurrent)
	if _, err := s.ns().Stat(s.ctx, cur); err != nil {
		return nil
	}
	cp := cairn.Join(root, now.Format(checkpointLayout))
	if err := s.ns().Rename(s.ctx, cur, cp); err != nil {
		return perr(cur, err)
	}
	s.trashLog("Created trash checkpoint: %s", cp)
	return nil
}
