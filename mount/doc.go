// Package mount owns the FUSE view of a cairn namespace: it shows a cairn
// directory tree as an ordinary mounted directory of write-once,
// append-only files, and it is the `cairn mount` command.
//
// The kernel talks to go-fuse nodes (node.go for names, lookups and
// creation, attr.go for attributes, symlinks and special files, xattr.go
// for extended attributes, file.go for open files, dir.go for listings);
// the nodes talk to a Backend (backend.go), which is a *client.Client in
// production and an in-memory fake in this package's tests. Every cairn
// error becomes an errno in one table (errno.go). Main (main.go,
// daemon.go) parses the command line, detaches like any mount helper, and
// unmounts on SIGTERM.
//
// Identity and permissions (identity.go): every call to the Backend
// carries the user and groups, by name, of the process whose request it
// serves, and metad checks permissions (HDFS's model), so the kernel is
// not asked to (no default_permissions unless -o default_permissions).
// stat(2) shows metad's owner and group names as this machine's uid and
// gid; a name unknown here shows as nobody (65534). Other users reach the
// mount only with -o allow_other. Opening an existing file for writing
// asks metad nothing: a permission denial comes with the first write. As
// on any FUSE mount without default_permissions, a name the kernel looked
// up for one user stays in its cache for a second, and another user may
// walk through it without a traversal check in that time.
//
// Write-once rules (DESIGN.md, "File semantics"): bytes are only ever
// added at the end of a file, by the process that created it or, through
// a Backend that can reopen files, by any later open for writing (>>,
// O_APPEND). A write below the end (an overwrite), beyond it (a hole), a
// truncate to another size, or O_TRUNC on a non-empty file is refused with
// EPERM, changes nothing, and logs one line naming the path and the rule.
// Every refusal, the mount's or metad's, logs such a line. stat(2) of a
// file this mount writes shows every byte its writer accepted; a reader
// through the mount that reaches past the bytes the backend can serve
// has the writer flush them first (file.go, Read).
//
// The rest of the file semantics: chmod, chown, utimes (touch), symlinks,
// fifos, sockets, device nodes and user.* xattrs are stored at metad.
// Times set on a file while this mount writes it are stored once it is
// closed, as closing sets the modification time. A fifo opens as a pipe
// between processes of this machine, as on NFS: its bytes never reach
// cairn. A device node keeps no device number (st_rdev 0) and cannot be
// opened. Hard links are refused with EPERM. A writable shared mmap is
// refused, though with ENODEV, not DESIGN.md's EPERM: FUSE sends no mmap
// request the mount could answer, so a handle open for writing is a
// direct-I/O one (file.go, openFlags), of which the kernel refuses every
// shared mapping; a read-only descriptor gets the kernel's EACCES for
// PROT_WRITE. st_blocks counts a file's bytes once, so du agrees with
// the sizes; df shows the cluster's raw capacity, replicas included.
package mount
