// Package webhdfs is the Hadoop WebHDFS REST API, server side: the
// request parser (path and query to an operation and its parameters),
// the JSON of the answers to the field (FileStatus, FileStatuses,
// DirectoryListing, ContentSummary, FileChecksum, BlockLocations, boolean,
// Path, Token, long, XAttrs), the RemoteException errors with Hadoop's
// exception names and HTTP codes, and one Handler serving the API in the
// three places cairn has it: metad's HTTP port (metadata answered there,
// OPEN, CREATE and APPEND redirected to a blockd), a blockd's HTTP port
// (the datanode side: the bytes, through the client library) and the
// HttpFS gateway (tools/httpfs: everything, never redirecting).
//
// The handler does not authenticate: its Session function, given by
// each place, says who a request is (a client certificate, a delegation
// token, or Hadoop's simple user.name on an insecure cluster) and gives
// the namespace to call as that user.
package webhdfs
