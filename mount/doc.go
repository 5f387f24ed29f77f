// Package mount owns the FUSE view of a cairn namespace: it shows a cairn
// directory tree as an ordinary mounted directory of write-once,
// append-only files, and it is the `cairn mount` command.
//
// The kernel talks to go-fuse nodes (node.go for names and attributes,
// file.go for open files, dir.go for listings); the nodes talk to a
// Backend (backend.go), which is a *client.Client in production and an
// in-memory fake in this package's tests. Every cairn error becomes an
// errno in one table (errno.go). Main (main.go, daemon.go) parses the
// command line, detaches like any mount helper, and unmounts on SIGTERM.
//
// Write-once rules (DESIGN.md, "File semantics"): bytes are only ever
// added at the end of a file, by the process that created it or, through
// a Backend that can reopen files, by any later open for writing (>>,
// O_APPEND). A write below the end (an overwrite), beyond it (a hole), a
// truncate to another size, or O_TRUNC on a non-empty file is refused with
// EPERM, changes nothing, and logs one line naming the path and the rule.
package mount
