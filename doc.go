// Package cairn holds the types and service interfaces shared by every part
// of cairn, a distributed filesystem in the shape of HDFS that is mounted
// with FUSE.
//
// One metadata daemon (metad) keeps the namespace in Pebble and decides
// where blocks go. Many block daemons (blockd) keep each block as a file
// blk_<id> beside blk_<id>_<genstamp>.meta, a file of HighwayHash checksums.
// Clients (the FUSE mount in mount/, the tools in tools/) ask metad for
// metadata and stream bytes straight to and from blockds through a pipeline.
//
// This package defines the vocabulary: blocks, nodes, file info, the
// Namespace service that metad offers clients, the Registry service that
// metad offers blockds, the error kinds every layer decides on, and the one
// function that defines a valid path.
package cairn
