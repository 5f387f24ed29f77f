package webhdfs

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"cairn"
)

// RemoteError is an error as WebHDFS answers it: a RemoteException with
// the name and Java class of Hadoop's exception and its HTTP status.
type RemoteError struct {
	Status    int
	Exception string // e.g. FileNotFoundException
	JavaClass string // e.g. java.io.FileNotFoundException
	Message   string
}

func (e *RemoteError) Error() string { return e.Exception + ": " + e.Message }

// Hadoop's exceptions, with the HTTP status its ExceptionHandler gives
// each (IOException and its subclasses 403, IllegalArgumentException and
// UnsupportedOperationException 400, SecurityException 401).
var (
	excNotFound      = exc(http.StatusNotFound, "FileNotFoundException", "java.io.FileNotFoundException")
	excExists        = exc(http.StatusForbidden, "FileAlreadyExistsException", "org.apache.hadoop.fs.FileAlreadyExistsException")
	excAccess        = exc(http.StatusForbidden, "AccessControlException", "org.apache.hadoop.security.AccessControlException")
	excIllegal       = exc(http.StatusBadRequest, "IllegalArgumentException", "java.lang.IllegalArgumentException")
	excUnsupported   = exc(http.StatusBadRequest, "UnsupportedOperationException", "java.lang.UnsupportedOperationException")
	excSecurity      = exc(http.StatusUnauthorized, "SecurityException", "java.lang.SecurityException")
	excParentNotDir  = exc(http.StatusForbidden, "ParentNotDirectoryException", "org.apache.hadoop.fs.ParentNotDirectoryException")
	excNotEmpty      = exc(http.StatusForbidden, "PathIsNotEmptyDirectoryException", "org.apache.hadoop.fs.PathIsNotEmptyDirectoryException")
	excBeingCreated  = exc(http.StatusForbidden, "AlreadyBeingCreatedException", "org.apache.hadoop.hdfs.protocol.AlreadyBeingCreatedException")
	excSafeMode      = exc(http.StatusForbidden, "SafeModeException", "org.apache.hadoop.hdfs.server.namenode.SafeModeException")
	excStandby       = exc(http.StatusForbidden, "StandbyException", "org.apache.hadoop.ipc.StandbyException")
	excRetriable     = exc(http.StatusForbidden, "RetriableException", "org.apache.hadoop.ipc.RetriableException")
	excIO            = exc(http.StatusForbidden, "IOException", "java.io.IOException")
	excInvalidPath   = exc(http.StatusBadRequest, "InvalidPathException", "org.apache.hadoop.fs.InvalidPathException")
	excUnavailable   = exc(http.StatusServiceUnavailable, "StandbyException", "org.apache.hadoop.ipc.StandbyException")
	excInternalError = exc(http.StatusInternalServerError, "RuntimeException", "java.lang.RuntimeException")
)

func exc(status int, name, class string) func(format string, a ...any) *RemoteError {
	return func(format string, a ...any) *RemoteError {
		return &RemoteError{Status: status, Exception: name, JavaClass: class, Message: fmt.Sprintf(format, a...)}
	}
}

// remoteError is err as a RemoteException: a *RemoteError as it is, a
// cairn error by its Kind.
func remoteError(err error) *RemoteError {
	var re *RemoteError
	if errors.As(err, &re) {
		return re
	}
	msg := err.Error()
	switch cairn.KindOf(err) {
	case cairn.KindNotExist, cairn.KindIsDir:
		return excNotFound("%s", msg)
	case cairn.KindExist:
		return excExists("%s", msg)
	case cairn.KindAccess, cairn.KindPermission:
		return excAccess("%s", msg)
	case cairn.KindInvalid, cairn.KindNameTooLong:
		return excIllegal("%s", msg)
	case cairn.KindNotDir:
		return excParentNotDir("%s", msg)
	case cairn.KindNotEmpty:
		return excNotEmpty("%s", msg)
	case cairn.KindBusy:
		return excBeingCreated("%s", msg)
	case cairn.KindSafeMode:
		return excSafeMode("%s", msg)
	case cairn.KindNotLeader:
		return excStandby("%s", msg)
	case cairn.KindRetry:
		return excRetriable("%s", msg)
	case cairn.KindUnavailable:
		return excUnavailable("%s", msg)
	case cairn.KindIO, cairn.KindNoSpace, cairn.KindNamespace:
		return excIO("%s", msg)
	}
	return excInternalError("%s", msg)
}

// writeError answers a RemoteException.
func writeError(w http.ResponseWriter, re *RemoteError) {
	b, _ := json.Marshal(map[string]any{"RemoteException": map[string]string{
		"exception": re.Exception, "javaClassName": re.JavaClass, "message": re.Message}})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Del("Content-Length")
	w.WriteHeader(re.Status)
	_, _ = w.Write(append(b, '\n'))
}

// Unauthorized answers a request that brought no credential, or one
// refused, as the API answers it: a SecurityException (401) in JSON,
// which WebHDFS clients parse, where a plain-text 401 leaves them a
// parse error.
func Unauthorized(w http.ResponseWriter, format string, a ...any) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="cluster"`)
	writeError(w, excSecurity(format, a...))
}
