package registry

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"syscall"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
)

// errorCode is one of the distribution-spec's error codes with the HTTP
// status it is answered with.
type errorCode struct {
	code   string
	status int
}

// The spec's error codes (distribution-spec v1.1, "Error Codes").
var (
	errBlobUnknown         = errorCode{"BLOB_UNKNOWN", http.StatusNotFound}
	errBlobUploadInvalid   = errorCode{"BLOB_UPLOAD_INVALID", http.StatusBadRequest}
	errBlobUploadUnknown   = errorCode{"BLOB_UPLOAD_UNKNOWN", http.StatusNotFound}
	errDigestInvalid       = errorCode{"DIGEST_INVALID", http.StatusBadRequest}
	errManifestBlobUnknown = errorCode{"MANIFEST_BLOB_UNKNOWN", http.StatusBadRequest}
	errManifestInvalid     = errorCode{"MANIFEST_INVALID", http.StatusBadRequest}
	errManifestUnknown     = errorCode{"MANIFEST_UNKNOWN", http.StatusNotFound}
	errNameInvalid         = errorCode{"NAME_INVALID", http.StatusBadRequest}
	errNameUnknown         = errorCode{"NAME_UNKNOWN", http.StatusNotFound}
	errUnsupported         = errorCode{"UNSUPPORTED", http.StatusMethodNotAllowed}
	errTooLarge            = errorCode{"SIZE_INVALID", http.StatusRequestEntityTooLarge}
	// A path that is no endpoint: the code for what is not implemented,
	// with the status of a missing resource.
	errNoEndpoint = errorCode{"UNSUPPORTED", http.StatusNotFound}
	// An upload's chunk that does not continue it: the spec asks for 416.
	errRangeInvalid = errorCode{"BLOB_UPLOAD_INVALID", http.StatusRequestedRangeNotSatisfiable}
)

// Where the spec has no code, distribution's, which clients built on its
// error codes know.
var (
	errRangeNotSatisfiable = errorCode{"RANGE_INVALID", http.StatusRequestedRangeNotSatisfiable}
	errPaginationInvalid   = errorCode{"PAGINATION_NUMBER_INVALID", http.StatusBadRequest}
)

// apiError is an error answered to the client with a code and a message.
type apiError struct {
	code   errorCode
	msg    string
	detail any
}

func (e *apiError) Error() string { return e.code.code + ": " + e.msg }

func newError(code errorCode, format string, args ...any) *apiError {
	return &apiError{code: code, msg: fmt.Sprintf(format, args...)}
}

// writeError answers err as the spec's JSON error body. Errors that are not
// an apiError are the registry's own failures: logged, and answered 500
// without internals.
func writeError(w http.ResponseWriter, r *http.Request, err error) {
	var ae *apiError
	if !errors.As(err, &ae) {
		slog.ErrorContext(r.Context(), "registry request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		ae = &apiError{code: errorCode{"UNKNOWN", http.StatusInternalServerError}, msg: "internal error"}
	}
	body := struct {
		Errors []any `json:"errors"`
	}{Errors: []any{struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Detail  any    `json:"detail,omitempty"`
	}{ae.code.code, ae.msg, ae.detail}}}
	raw, _ := json.Marshal(body) // strings and JSON-safe details only
	raw = append(raw, '\n')
	// Handlers may have set Content-Length for a success they did not
	// reach (writeRange does): a body longer than declared makes net/http
	// drop the connection after the response, unannounced, and the
	// client's next request on it fails.
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(raw)))
	w.WriteHeader(ae.code.status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(raw)
	}
}

// isNotFound reports whether a storage driver error means the path is absent.
func isNotFound(err error) bool {
	var nf storagedriver.PathNotFoundError
	return errors.As(err, &nf)
}

// isRefilled tells whether deleting a directory failed because something
// was written into it while it was being emptied: on the filesystem
// driver, rmdir's ENOTEMPTY, which distribution's storagedriver.Error
// carries without unwrapping. (Object stores delete key by key and never
// report it.)
func isRefilled(err error) bool {
	var de storagedriver.Error
	if errors.As(err, &de) {
		err = de.Detail
	}
	return errors.Is(err, syscall.ENOTEMPTY)
}
