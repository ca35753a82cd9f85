package grpcapi

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"unicode"

	"google.golang.org/grpc/codes"

	"github.com/varwatch/varwatch/engine"
	"github.com/varwatch/varwatch/plugins"
)

// The error table: every status the server sends carries a
// google.rpc.ErrorInfo (domain ErrorDomain) with one of these reasons, so
// that clients branch on the reason and its metadata, never on the
// message, which stays free to improve. Reasons are a wire contract:
// spelled once here, never renamed. README.md ("Error codes") lists them, and
// a test keeps the two in step.
const (
	ErrorDomain = "varwatch.v1"

	// ReasonInvalidArgument (INVALID_ARGUMENT): a malformed request (an
	// empty or malformed identifier, a bad glob, bad constraints, ...).
	ReasonInvalidArgument = "INVALID_ARGUMENT"
	// ReasonWrongType (INVALID_ARGUMENT): a value of another type than its
	// variable's. Metadata variable_type is the variable's type,
	// value_type the value's (float, integer, string, ...).
	ReasonWrongType = "WRONG_TYPE"
	// ReasonConstraintViolated (INVALID_ARGUMENT): a value outside its
	// variable's constraints. Metadata constraint names the one it
	// violates (min, max, min_integer, max_length, pattern, choices, ...).
	ReasonConstraintViolated = "CONSTRAINT_VIOLATED"
	// ReasonSessionNotFound (NOT_FOUND): no such session, or it expired.
	ReasonSessionNotFound = "SESSION_NOT_FOUND"
	// ReasonVariableNotFound (NOT_FOUND): no such variable in the session.
	ReasonVariableNotFound = "VARIABLE_NOT_FOUND"
	// ReasonAlreadyExists (ALREADY_EXISTS): a variable of that name is
	// registered already.
	ReasonAlreadyExists = "ALREADY_EXISTS"
	// ReasonVersionConflict (ABORTED): a set's expected_version is not the
	// variable's. Metadata variable, expected_version, current_version.
	ReasonVersionConflict = "VERSION_CONFLICT"
	// ReasonConcurrentUpdate (ABORTED): the session changed under a call
	// while it was checked (its variables were registered again or written
	// meanwhile); nothing was applied, send it again.
	ReasonConcurrentUpdate = "CONCURRENT_UPDATE"
	// ReasonLimitExceeded (RESOURCE_EXHAUSTED): a request refused by a
	// limit; metadata limit names it (max_sessions, ...) and value is the
	// configured limit. A QuotaFailure detail carries the same, with what
	// was asked as its description.
	ReasonLimitExceeded = "LIMIT_EXCEEDED"
	// ReasonCompacted (OUT_OF_RANGE): metadata compacted_revision is the
	// oldest revision a watch can resume from; requested_revision what was
	// asked.
	ReasonCompacted = "REVISION_COMPACTED"
	// ReasonIncarnationChanged (FAILED_PRECONDITION): a watch named a
	// session incarnation other than the live session's, whose revisions
	// are of another history. Metadata session_id, current_incarnation,
	// requested_incarnation. The client must watch again with initial
	// values.
	ReasonIncarnationChanged = "SESSION_INCARNATION_CHANGED"
	// ReasonFiltersNotLoaded (FAILED_PRECONDITION): a watch names filters
	// and the server has no filter plugins loaded.
	ReasonFiltersNotLoaded = "FILTERS_NOT_LOADED"
	// ReasonPermissionDenied (PERMISSION_DENIED): the session belongs to
	// another tenant than the token's.
	ReasonPermissionDenied = "PERMISSION_DENIED"
	// ReasonTokenMissing, ReasonTokenMalformed and ReasonTokenInvalid
	// (UNAUTHENTICATED): the server wants "authorization: Bearer <token>"
	// and got no such header, a malformed one (or several), or a token it
	// does not know.
	ReasonTokenMissing   = "TOKEN_MISSING"
	ReasonTokenMalformed = "TOKEN_MALFORMED"
	ReasonTokenInvalid   = "TOKEN_INVALID"
	// ReasonSlowConsumer (RESOURCE_EXHAUSTED) and ReasonShuttingDown
	// (UNAVAILABLE) end watch streams; metadata resume_revision is the
	// start_revision to resume from without a gap. A unary call refused
	// by a closing server is SHUTTING_DOWN without metadata.
	ReasonSlowConsumer = "SLOW_CONSUMER"
	ReasonShuttingDown = "SHUTTING_DOWN"
	// ReasonFilterFailed (ABORTED) ends the streams of a filter chain whose
	// plugin failed with on_error=close; metadata resume_revision as above.
	ReasonFilterFailed = "FILTER_FAILED"
	// ReasonStorageUnavailable (UNAVAILABLE): the server could not write
	// its log (disk full, say). The call was not acknowledged; writes fail
	// so until the disk works again, reads and watches go on.
	ReasonStorageUnavailable = "STORAGE_UNAVAILABLE"
	// ReasonClusterUnavailable (UNAVAILABLE): a node of a cluster (serve
	// --cluster) could not reach the log it shares with the other nodes
	// (NATS JetStream), for a write or for a linearizable read. A write
	// may or may not have applied; local reads and watches go on.
	ReasonClusterUnavailable = "CLUSTER_UNAVAILABLE"
	// ReasonWatchCancelled (CANCELLED): a watch of a Watch stream ended by
	// the client's WatchCancel.
	ReasonWatchCancelled = "WATCH_CANCELLED"
	// ReasonCancelled (CANCELLED) and ReasonDeadlineExceeded
	// (DEADLINE_EXCEEDED): the call's context ended on the server.
	ReasonCancelled        = "CANCELLED"
	ReasonDeadlineExceeded = "DEADLINE_EXCEEDED"
	// ReasonUnimplemented (UNIMPLEMENTED): a request field that is in the
	// wire contract but not served (start_revision with filters).
	ReasonUnimplemented = "UNIMPLEMENTED"
	// ReasonInternal (INTERNAL): a server bug or a failure of no known
	// kind; never a client mistake.
	ReasonInternal = "INTERNAL"
)

// A reasonRow is one row of the error table: a reason, the one code it
// always travels with, and the metadata keys its ErrorInfo carries
// (optional ones are marked so in the doc comment of the reason).
type reasonRow struct {
	reason string
	code   codes.Code
	meta   []string
}

// reasonTable is every reason the server sends, in the order README.md
// lists them.
var reasonTable = []reasonRow{
	{ReasonInvalidArgument, codes.InvalidArgument, nil},
	{ReasonWrongType, codes.InvalidArgument, []string{"variable_type", "value_type"}},
	{ReasonConstraintViolated, codes.InvalidArgument, []string{"constraint"}},
	{ReasonSessionNotFound, codes.NotFound, nil},
	{ReasonVariableNotFound, codes.NotFound, nil},
	{ReasonAlreadyExists, codes.AlreadyExists, nil},
	{ReasonVersionConflict, codes.Aborted, []string{"variable", "expected_version", "current_version"}},
	{ReasonConcurrentUpdate, codes.Aborted, nil},
	{ReasonFilterFailed, codes.Aborted, []string{"resume_revision"}},
	{ReasonLimitExceeded, codes.ResourceExhausted, []string{"limit", "value"}},
	{ReasonSlowConsumer, codes.ResourceExhausted, []string{"resume_revision"}},
	{ReasonCompacted, codes.OutOfRange, []string{"compacted_revision", "requested_revision"}},
	{ReasonIncarnationChanged, codes.FailedPrecondition, []string{"session_id", "current_incarnation", "requested_incarnation"}},
	{ReasonFiltersNotLoaded, codes.FailedPrecondition, nil},
	{ReasonPermissionDenied, codes.PermissionDenied, nil},
	{ReasonTokenMissing, codes.Unauthenticated, nil},
	{ReasonTokenMalformed, codes.Unauthenticated, nil},
	{ReasonTokenInvalid, codes.Unauthenticated, nil},
	{ReasonShuttingDown, codes.Unavailable, []string{"resume_revision"}},
	{ReasonStorageUnavailable, codes.Unavailable, nil},
	{ReasonClusterUnavailable, codes.Unavailable, nil},
	{ReasonWatchCancelled, codes.Canceled, nil},
	{ReasonCancelled, codes.Canceled, nil},
	{ReasonDeadlineExceeded, codes.DeadlineExceeded, nil},
	{ReasonUnimplemented, codes.Unimplemented, nil},
	{ReasonInternal, codes.Internal, nil},
}

// reasonCode is the code of each reason in reasonTable.
var reasonCode = func() map[string]codes.Code {
	m := make(map[string]codes.Code, len(reasonTable))
	for _, r := range reasonTable {
		m[r.reason] = r.code
	}
	return m
}()

// codeOf is reason's code; an unknown reason is a bug, so it panics (at
// the first use, which every reason's test makes).
func codeOf(reason string) codes.Code {
	c, ok := reasonCode[reason]
	if !ok {
		panic("grpcapi: reason " + reason + " is not in reasonTable")
	}
	return c
}

// errorKinds maps the errors the engine (and the transport's own
// sentinels) return to their reason, most specific first: typed errors
// before the kinds they wrap. meta, if set, gives the ErrorInfo metadata
// from the error (none for a bare sentinel, which only tests make).
var errorKinds = []struct {
	reason string
	is     func(error) bool
	meta   func(error) map[string]string
}{
	{ReasonWrongType, isA[*engine.WrongTypeError], func(err error) map[string]string {
		e := asA[*engine.WrongTypeError](err)
		return map[string]string{"variable_type": e.Variable.String(), "value_type": e.Value.String()}
	}},
	{ReasonConstraintViolated, isA[*engine.ConstraintError], func(err error) map[string]string {
		return map[string]string{"constraint": asA[*engine.ConstraintError](err).Constraint}
	}},
	{ReasonInvalidArgument, is(engine.ErrInvalidArgument), nil},
	{ReasonSessionNotFound, is(engine.ErrSessionNotFound), nil},
	{ReasonVariableNotFound, is(engine.ErrVariableNotFound), nil},
	{ReasonAlreadyExists, is(engine.ErrAlreadyExists), nil},
	{ReasonVersionConflict, isA[*engine.VersionConflictError], func(err error) map[string]string {
		e := asA[*engine.VersionConflictError](err)
		return map[string]string{"variable": e.Variable,
			"expected_version": strconv.FormatInt(e.Expected, 10), "current_version": strconv.FormatInt(e.Current, 10)}
	}},
	{ReasonConcurrentUpdate, is(engine.ErrVersionConflict), nil},
	{ReasonLimitExceeded, is(engine.ErrLimitExceeded), func(err error) map[string]string {
		e := asA[*engine.LimitError](err)
		if e == nil {
			return nil
		}
		return map[string]string{"limit": e.Limit, "value": strconv.FormatInt(e.Value, 10)}
	}},
	{ReasonSlowConsumer, is(engine.ErrSlowConsumer), nil},
	{ReasonCompacted, is(engine.ErrCompacted), func(err error) map[string]string {
		e := asA[*engine.CompactedError](err)
		if e == nil {
			return nil
		}
		return map[string]string{"compacted_revision": strconv.FormatInt(e.Compacted, 10),
			"requested_revision": strconv.FormatInt(e.Requested, 10)}
	}},
	{ReasonIncarnationChanged, is(engine.ErrIncarnationChanged), func(err error) map[string]string {
		e := asA[*engine.IncarnationError](err)
		if e == nil {
			return nil
		}
		return map[string]string{"session_id": e.Session, "current_incarnation": e.Current, "requested_incarnation": e.Requested}
	}},
	{ReasonPermissionDenied, is(engine.ErrPermissionDenied), nil},
	{ReasonClusterUnavailable, is(engine.ErrLogUnavailable), nil},
	{ReasonStorageUnavailable, is(engine.ErrUnavailable), nil},
	{ReasonShuttingDown, is(engine.ErrClosed), nil},
	{ReasonShuttingDown, is(errShutdown), nil},
	{ReasonShuttingDown, is(plugins.ErrClosed), nil},
	{ReasonWatchCancelled, is(engine.ErrUnsubscribed), nil},
	{ReasonCancelled, is(context.Canceled), nil},
	{ReasonDeadlineExceeded, is(context.DeadlineExceeded), nil},
}

// classify is err's reason and ErrorInfo metadata: the first row of
// errorKinds it matches, else INTERNAL.
func classify(err error) (reason string, meta map[string]string) {
	for _, k := range errorKinds {
		if k.is(err) {
			if k.meta != nil {
				meta = k.meta(err)
			}
			return k.reason, meta
		}
	}
	return ReasonInternal, nil
}

func is(kind error) func(error) bool { return func(err error) bool { return errors.Is(err, kind) } }

func isA[T error](err error) bool {
	var t T
	return errors.As(err, &t)
}

func asA[T error](err error) T {
	var t T
	errors.As(err, &t)
	return t
}

// CodeName spells c as the gRPC spec does (NOT_FOUND, CANCELLED), the way
// the README's error tables and the CLI's messages name codes.
func CodeName(c codes.Code) string {
	switch c {
	case codes.OK:
		return "OK"
	case codes.Canceled: // the Go constant is spelled the American way
		return "CANCELLED"
	}
	var b strings.Builder
	for i, r := range c.String() {
		if i > 0 && unicode.IsUpper(r) {
			b.WriteByte('_')
		}
		b.WriteRune(unicode.ToUpper(r))
	}
	return b.String()
}
