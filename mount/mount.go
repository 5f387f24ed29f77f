package mount

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"cairn"
)

// Options tune a mount. Zero values take the defaults.
type Options struct {
	// Root is the cairn directory shown at the mountpoint; default "/".
	Root string
	// FsName is the "Filesystem" column of df and mount; default "cairn".
	FsName string
	// ReadOnly mounts read-only.
	ReadOnly bool
	// AllowOther lets users other than the mounting one in.
	AllowOther bool
	// DefaultPermissions makes the kernel also check permission bits,
	// against the uids and gids stat(2) shows, before asking the mount.
	// Off by default: metad checks every call against the caller's user
	// and groups by name, and the kernel's numeric check can only
	// disagree with it (a name unknown on this machine, metad's
	// superusers).
	DefaultPermissions bool
	// KernelOptions are further -o options for the kernel (nosuid, noexec...).
	KernelOptions []string
	// ReadAheadKB is the kernel's read-ahead for the mount, in KiB:
	// sequential reads come as requests of up to 1 MiB, this much in
	// flight. 0 takes DefaultReadAheadKB; negative leaves the kernel's
	// (128 KiB, requests of 128 KiB). Setting it needs root.
	ReadAheadKB int
	// Debug logs every FUSE request and reply at debug level.
	Debug bool
	// Logger receives the mount's log lines; default none.
	Logger *zap.Logger
	// Metrics, when set, gets the mount's FUSE metrics (metrics.go):
	// every request is then timed and counted on its way (timedfs.go).
	Metrics prometheus.Registerer
}

// Mounted is a live mount.
type Mounted struct {
	dir    string
	server *fuse.Server
	fsys   *fsys
	log    *zap.Logger

	once sync.Once
	err  error
}

// Mount shows b's directory opts.Root at mountpoint and serves it until
// Unmount. ctx bounds the setup only.
func Mount(ctx context.Context, b Backend, mountpoint string, opts Options) (*Mounted, error) {
	root := strings.TrimSuffix(opts.Root, "/")
	if root == "" {
		root = "/"
	}
	if err := cairn.ValidatePath(root); err != nil {
		return nil, fmt.Errorf("mount: root: %w", err)
	}
	fi, err := b.Stat(ctx, root)
	if err != nil {
		return nil, fmt.Errorf("mount: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("mount: %s is not a directory", root)
	}
	log := opts.Logger
	if log == nil {
		log = zap.NewNop()
	}
	f := &fsys{
		root:     root,
		readOnly: opts.ReadOnly,
		ids:      newIDMap(uint32(os.Getuid()), uint32(os.Getgid())),
		log:      log,
		writers:  map[*handle]bool{},
	}
	f.b = callerBackend{b: b, fsys: f}
	fsName := opts.FsName
	if fsName == "" {
		fsName = "cairn"
	}
	kernel := append([]string(nil), opts.KernelOptions...)
	if opts.ReadOnly {
		kernel = append(kernel, "ro")
	}
	if opts.DefaultPermissions {
		kernel = append(kernel, "default_permissions")
	}
	fuseLog := log.Named("fuse")
	debugLog, err := zap.NewStdLogAt(fuseLog, zapcore.DebugLevel)
	if err != nil {
		return nil, err
	}
	warnLog, err := zap.NewStdLogAt(fuseLog, zapcore.WarnLevel)
	if err != nil {
		return nil, err
	}
	fo := &fs.Options{
		MountOptions: fuse.MountOptions{
			FsName:        fsName,
			Name:          "cairn",
			AllowOther:    opts.AllowOther,
			Options:       kernel,
			MaxBackground: 64,
			MaxWrite:      1 << 20,
			// One read of a handle at a time, in order: the client reads
			// a file through one stream from a blockd kept ahead of the
			// reads, which reads arriving out of order would restart.
			// With 1 MiB requests and the read-ahead (readahead.go) that
			// stream fills the FUSE ceiling.
			SyncRead: true,
			// The kernel asks for security.capability before writes
			// (and for POSIX ACLs); go-fuse answers those with ENODATA
			// itself, so they cost no call to the backend. Only user.*
			// attributes are kept (xattr.go).
			IgnoreSecurityLabels: true,
			// A symlink's target never changes: the kernel may keep it.
			EnableSymlinkCaching: true,
			// O_TRUNC comes with OPEN, where the write-once rule is
			// checked, rather than as a separate SETATTR.
			ExtraCapabilities: fuse.CAP_ATOMIC_O_TRUNC,
			Debug:             opts.Debug,
			Logger:            debugLog,
		},
		// No EntryTimeout or AttrTimeout: every reply sets its own, and a
		// file being written gets none. No UID or GID: owners are what
		// metad says (identity.go). A mode of 0 stays 0.
		NullPermissions: true,
		Logger:          warnLog,
	}
	if fi.Inode != 0 {
		fo.RootStableAttr = &fs.StableAttr{Ino: fi.Inode}
	}
	// As fs.Mount, with the node file system timed when metrics are kept.
	rawFS := fs.NewNodeFS(&node{fsys: f, fi: fi}, fo)
	if opts.Metrics != nil {
		m, err := newMetrics(opts.Metrics)
		if err != nil {
			return nil, err
		}
		rawFS = timedFS{RawFileSystem: rawFS, m: m}
	}
	server, err := fuse.NewServer(rawFS, mountpoint, &fo.MountOptions)
	if err != nil {
		return nil, fmt.Errorf("mount: %s: %w", mountpoint, err)
	}
	go server.Serve()
	if err := server.WaitMount(); err != nil {
		return nil, fmt.Errorf("mount: %s: %w", mountpoint, err)
	}
	setReadAhead(mountpoint, opts.ReadAheadKB, log)
	return &Mounted{dir: mountpoint, server: server, fsys: f, log: log}, nil
}

// Dir is the mountpoint.
func (m *Mounted) Dir() string { return m.dir }

// Unmount detaches the mount; if it is busy, lazily (fusermount3 -u -z),
// so it leaves the tree at once and goes when its last file is closed.
// Writers still open then are closed, their errors logged.
func (m *Mounted) Unmount() error {
	m.once.Do(func() {
		if err := m.server.Unmount(); err != nil {
			m.log.Warn("unmount failed; detaching lazily", zap.String("mountpoint", m.dir), zap.Error(err))
			m.err = lazyUnmount(m.dir)
		}
		m.fsys.closeWriters()
	})
	return m.err
}

// Wait returns when the mount is no longer served: after Unmount, or
// after someone else unmounted it.
func (m *Mounted) Wait() { m.server.Wait() }

func lazyUnmount(dir string) error {
	out, err := exec.Command("fusermount3", "-u", "-z", dir).CombinedOutput()
	if err == nil {
		return nil
	}
	out2, err2 := exec.Command("umount", "-l", dir).CombinedOutput()
	if err2 == nil {
		return nil
	}
	return fmt.Errorf("mount: unmount %s: fusermount3: %v %s; umount: %v %s", dir,
		err, strings.TrimSpace(string(out)), err2, strings.TrimSpace(string(out2)))
}
