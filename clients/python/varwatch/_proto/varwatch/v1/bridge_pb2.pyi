from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor
VARIABLE_TYPE_BOOLEAN: VariableType
VARIABLE_TYPE_CHOICE: VariableType
VARIABLE_TYPE_EMBEDDING: VariableType
VARIABLE_TYPE_FLOAT: VariableType
VARIABLE_TYPE_INTEGER: VariableType
VARIABLE_TYPE_MODULE: VariableType
VARIABLE_TYPE_STRING: VariableType
VARIABLE_TYPE_TENSOR: VariableType
VARIABLE_TYPE_UNSPECIFIED: VariableType
VIEW_FULL: View
VIEW_UNSPECIFIED: View
VIEW_VALUE: View

class CleanupSessionRequest(_message.Message):
    __slots__ = ["session_id"]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class CleanupSessionResponse(_message.Message):
    __slots__ = ["variables_deleted"]
    VARIABLES_DELETED_FIELD_NUMBER: _ClassVar[int]
    variables_deleted: int
    def __init__(self, variables_deleted: _Optional[int] = ...) -> None: ...

class Constraints(_message.Message):
    __slots__ = ["allowed_modules", "choices", "dimensions", "max", "max_integer", "max_length", "min", "min_integer", "min_length", "pattern", "shape"]
    ALLOWED_MODULES_FIELD_NUMBER: _ClassVar[int]
    CHOICES_FIELD_NUMBER: _ClassVar[int]
    DIMENSIONS_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    MAX_INTEGER_FIELD_NUMBER: _ClassVar[int]
    MAX_LENGTH_FIELD_NUMBER: _ClassVar[int]
    MIN_FIELD_NUMBER: _ClassVar[int]
    MIN_INTEGER_FIELD_NUMBER: _ClassVar[int]
    MIN_LENGTH_FIELD_NUMBER: _ClassVar[int]
    PATTERN_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    allowed_modules: _containers.RepeatedScalarFieldContainer[str]
    choices: _containers.RepeatedScalarFieldContainer[str]
    dimensions: int
    max: float
    max_integer: int
    max_length: int
    min: float
    min_integer: int
    min_length: int
    pattern: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, min: _Optional[float] = ..., max: _Optional[float] = ..., min_integer: _Optional[int] = ..., max_integer: _Optional[int] = ..., min_length: _Optional[int] = ..., max_length: _Optional[int] = ..., pattern: _Optional[str] = ..., choices: _Optional[_Iterable[str]] = ..., allowed_modules: _Optional[_Iterable[str]] = ..., dimensions: _Optional[int] = ..., shape: _Optional[_Iterable[int]] = ...) -> None: ...

class DeleteVariableRequest(_message.Message):
    __slots__ = ["session_id", "variable_identifier"]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    VARIABLE_IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    variable_identifier: str
    def __init__(self, session_id: _Optional[str] = ..., variable_identifier: _Optional[str] = ...) -> None: ...

class DeleteVariableResponse(_message.Message):
    __slots__ = ["revision"]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    revision: int
    def __init__(self, revision: _Optional[int] = ...) -> None: ...

class Embedding(_message.Message):
    __slots__ = ["values"]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, values: _Optional[_Iterable[float]] = ...) -> None: ...

class FilterSpec(_message.Message):
    __slots__ = ["name", "params"]
    class ParamsEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    name: str
    params: _containers.ScalarMap[str, str]
    def __init__(self, name: _Optional[str] = ..., params: _Optional[_Mapping[str, str]] = ...) -> None: ...

class GetSessionRequest(_message.Message):
    __slots__ = ["session_id"]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class GetSessionResponse(_message.Message):
    __slots__ = ["session"]
    SESSION_FIELD_NUMBER: _ClassVar[int]
    session: Session
    def __init__(self, session: _Optional[_Union[Session, _Mapping]] = ...) -> None: ...

class GetVariableRequest(_message.Message):
    __slots__ = ["session_id", "variable_identifier"]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    VARIABLE_IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    variable_identifier: str
    def __init__(self, session_id: _Optional[str] = ..., variable_identifier: _Optional[str] = ...) -> None: ...

class GetVariableResponse(_message.Message):
    __slots__ = ["variable"]
    VARIABLE_FIELD_NUMBER: _ClassVar[int]
    variable: Variable
    def __init__(self, variable: _Optional[_Union[Variable, _Mapping]] = ...) -> None: ...

class GetVariablesRequest(_message.Message):
    __slots__ = ["session_id", "variable_identifiers"]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    VARIABLE_IDENTIFIERS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    variable_identifiers: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, session_id: _Optional[str] = ..., variable_identifiers: _Optional[_Iterable[str]] = ...) -> None: ...

class GetVariablesResponse(_message.Message):
    __slots__ = ["missing", "revision", "variables"]
    MISSING_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    VARIABLES_FIELD_NUMBER: _ClassVar[int]
    missing: _containers.RepeatedScalarFieldContainer[str]
    revision: int
    variables: _containers.RepeatedCompositeFieldContainer[Variable]
    def __init__(self, variables: _Optional[_Iterable[_Union[Variable, _Mapping]]] = ..., missing: _Optional[_Iterable[str]] = ..., revision: _Optional[int] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ["session_id"]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ["expires_at", "incarnation", "server_time", "session_valid"]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    SERVER_TIME_FIELD_NUMBER: _ClassVar[int]
    SESSION_VALID_FIELD_NUMBER: _ClassVar[int]
    expires_at: _timestamp_pb2.Timestamp
    incarnation: str
    server_time: _timestamp_pb2.Timestamp
    session_valid: bool
    def __init__(self, session_valid: bool = ..., server_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., expires_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., incarnation: _Optional[str] = ...) -> None: ...

class InitializeSessionRequest(_message.Message):
    __slots__ = ["metadata", "session_id", "ttl"]
    class MetadataEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    METADATA_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    metadata: _containers.ScalarMap[str, str]
    session_id: str
    ttl: _duration_pb2.Duration
    def __init__(self, session_id: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., ttl: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class InitializeSessionResponse(_message.Message):
    __slots__ = ["created", "session"]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    SESSION_FIELD_NUMBER: _ClassVar[int]
    created: bool
    session: Session
    def __init__(self, session: _Optional[_Union[Session, _Mapping]] = ..., created: bool = ...) -> None: ...

class ListSessionsRequest(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class ListSessionsResponse(_message.Message):
    __slots__ = ["sessions"]
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    sessions: _containers.RepeatedCompositeFieldContainer[Session]
    def __init__(self, sessions: _Optional[_Iterable[_Union[Session, _Mapping]]] = ...) -> None: ...

class ListVariablesRequest(_message.Message):
    __slots__ = ["pattern", "session_id"]
    PATTERN_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    pattern: str
    session_id: str
    def __init__(self, session_id: _Optional[str] = ..., pattern: _Optional[str] = ...) -> None: ...

class ListVariablesResponse(_message.Message):
    __slots__ = ["revision", "variables"]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    VARIABLES_FIELD_NUMBER: _ClassVar[int]
    revision: int
    variables: _containers.RepeatedCompositeFieldContainer[Variable]
    def __init__(self, variables: _Optional[_Iterable[_Union[Variable, _Mapping]]] = ..., revision: _Optional[int] = ...) -> None: ...

class PingRequest(_message.Message):
    __slots__ = ["message"]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    message: str
    def __init__(self, message: _Optional[str] = ...) -> None: ...

class PingResponse(_message.Message):
    __slots__ = ["message", "server_time"]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    SERVER_TIME_FIELD_NUMBER: _ClassVar[int]
    message: str
    server_time: _timestamp_pb2.Timestamp
    def __init__(self, message: _Optional[str] = ..., server_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RegisterVariableRequest(_message.Message):
    __slots__ = ["constraints", "initial_value", "metadata", "name", "session_id", "type"]
    class MetadataEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CONSTRAINTS_FIELD_NUMBER: _ClassVar[int]
    INITIAL_VALUE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    constraints: Constraints
    initial_value: Value
    metadata: _containers.ScalarMap[str, str]
    name: str
    session_id: str
    type: VariableType
    def __init__(self, session_id: _Optional[str] = ..., name: _Optional[str] = ..., type: _Optional[_Union[VariableType, str]] = ..., initial_value: _Optional[_Union[Value, _Mapping]] = ..., constraints: _Optional[_Union[Constraints, _Mapping]] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class RegisterVariableResponse(_message.Message):
    __slots__ = ["revision", "variable"]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    VARIABLE_FIELD_NUMBER: _ClassVar[int]
    revision: int
    variable: Variable
    def __init__(self, variable: _Optional[_Union[Variable, _Mapping]] = ..., revision: _Optional[int] = ...) -> None: ...

class Session(_message.Message):
    __slots__ = ["created_at", "expires_at", "id", "incarnation", "last_used_at", "metadata", "revision", "ttl", "variable_count"]
    class MetadataEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    LAST_USED_AT_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    VARIABLE_COUNT_FIELD_NUMBER: _ClassVar[int]
    created_at: _timestamp_pb2.Timestamp
    expires_at: _timestamp_pb2.Timestamp
    id: str
    incarnation: str
    last_used_at: _timestamp_pb2.Timestamp
    metadata: _containers.ScalarMap[str, str]
    revision: int
    ttl: _duration_pb2.Duration
    variable_count: int
    def __init__(self, id: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., created_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., last_used_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., expires_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., ttl: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., variable_count: _Optional[int] = ..., revision: _Optional[int] = ..., incarnation: _Optional[str] = ...) -> None: ...

class SetVariableRequest(_message.Message):
    __slots__ = ["create_type", "expected_version", "metadata", "session_id", "source", "value", "variable_identifier"]
    class MetadataEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CREATE_TYPE_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    VARIABLE_IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    create_type: VariableType
    expected_version: int
    metadata: _containers.ScalarMap[str, str]
    session_id: str
    source: str
    value: Value
    variable_identifier: str
    def __init__(self, session_id: _Optional[str] = ..., variable_identifier: _Optional[str] = ..., value: _Optional[_Union[Value, _Mapping]] = ..., metadata: _Optional[_Mapping[str, str]] = ..., source: _Optional[str] = ..., expected_version: _Optional[int] = ..., create_type: _Optional[_Union[VariableType, str]] = ...) -> None: ...

class SetVariableResponse(_message.Message):
    __slots__ = ["revision", "variable"]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    VARIABLE_FIELD_NUMBER: _ClassVar[int]
    revision: int
    variable: Variable
    def __init__(self, variable: _Optional[_Union[Variable, _Mapping]] = ..., revision: _Optional[int] = ...) -> None: ...

class SetVariableResult(_message.Message):
    __slots__ = ["error", "error_code", "error_metadata", "error_reason", "index", "revision", "success", "variable", "variable_id", "variable_identifier", "version"]
    class ErrorMetadataEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ERROR_METADATA_FIELD_NUMBER: _ClassVar[int]
    ERROR_REASON_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    VARIABLE_FIELD_NUMBER: _ClassVar[int]
    VARIABLE_IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    VARIABLE_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    error: str
    error_code: int
    error_metadata: _containers.ScalarMap[str, str]
    error_reason: str
    index: int
    revision: int
    success: bool
    variable: Variable
    variable_id: str
    variable_identifier: str
    version: int
    def __init__(self, variable_identifier: _Optional[str] = ..., success: bool = ..., variable: _Optional[_Union[Variable, _Mapping]] = ..., error_code: _Optional[int] = ..., error: _Optional[str] = ..., revision: _Optional[int] = ..., error_reason: _Optional[str] = ..., error_metadata: _Optional[_Mapping[str, str]] = ..., variable_id: _Optional[str] = ..., version: _Optional[int] = ..., index: _Optional[int] = ...) -> None: ...

class SetVariablesRequest(_message.Message):
    __slots__ = ["atomic", "session_id", "small_acks", "updates"]
    ATOMIC_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SMALL_ACKS_FIELD_NUMBER: _ClassVar[int]
    UPDATES_FIELD_NUMBER: _ClassVar[int]
    atomic: bool
    session_id: str
    small_acks: bool
    updates: _containers.RepeatedCompositeFieldContainer[SetVariableRequest]
    def __init__(self, session_id: _Optional[str] = ..., updates: _Optional[_Iterable[_Union[SetVariableRequest, _Mapping]]] = ..., atomic: bool = ..., small_acks: bool = ...) -> None: ...

class SetVariablesResponse(_message.Message):
    __slots__ = ["results", "revision"]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[SetVariableResult]
    revision: int
    def __init__(self, results: _Optional[_Iterable[_Union[SetVariableResult, _Mapping]]] = ..., revision: _Optional[int] = ...) -> None: ...

class Tensor(_message.Message):
    __slots__ = ["data", "dtype", "shape"]
    DATA_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    dtype: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, shape: _Optional[_Iterable[int]] = ..., dtype: _Optional[str] = ..., data: _Optional[bytes] = ...) -> None: ...

class Value(_message.Message):
    __slots__ = ["boolean_value", "choice_value", "embedding_value", "float_value", "integer_value", "module_value", "string_value", "tensor_value"]
    BOOLEAN_VALUE_FIELD_NUMBER: _ClassVar[int]
    CHOICE_VALUE_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_VALUE_FIELD_NUMBER: _ClassVar[int]
    FLOAT_VALUE_FIELD_NUMBER: _ClassVar[int]
    INTEGER_VALUE_FIELD_NUMBER: _ClassVar[int]
    MODULE_VALUE_FIELD_NUMBER: _ClassVar[int]
    STRING_VALUE_FIELD_NUMBER: _ClassVar[int]
    TENSOR_VALUE_FIELD_NUMBER: _ClassVar[int]
    boolean_value: bool
    choice_value: str
    embedding_value: Embedding
    float_value: float
    integer_value: int
    module_value: str
    string_value: str
    tensor_value: Tensor
    def __init__(self, float_value: _Optional[float] = ..., integer_value: _Optional[int] = ..., string_value: _Optional[str] = ..., boolean_value: bool = ..., choice_value: _Optional[str] = ..., module_value: _Optional[str] = ..., embedding_value: _Optional[_Union[Embedding, _Mapping]] = ..., tensor_value: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...

class Variable(_message.Message):
    __slots__ = ["constraints", "create_revision", "created_at", "id", "last_update_source", "last_updated_at", "metadata", "mod_revision", "name", "type", "value", "version"]
    class MetadataEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CONSTRAINTS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    CREATE_REVISION_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    LAST_UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_UPDATE_SOURCE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    MOD_REVISION_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    constraints: Constraints
    create_revision: int
    created_at: _timestamp_pb2.Timestamp
    id: str
    last_update_source: str
    last_updated_at: _timestamp_pb2.Timestamp
    metadata: _containers.ScalarMap[str, str]
    mod_revision: int
    name: str
    type: VariableType
    value: Value
    version: int
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., type: _Optional[_Union[VariableType, str]] = ..., value: _Optional[_Union[Value, _Mapping]] = ..., constraints: _Optional[_Union[Constraints, _Mapping]] = ..., metadata: _Optional[_Mapping[str, str]] = ..., version: _Optional[int] = ..., created_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., last_updated_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., create_revision: _Optional[int] = ..., mod_revision: _Optional[int] = ..., last_update_source: _Optional[str] = ...) -> None: ...

class VariableUpdate(_message.Message):
    __slots__ = ["coalesced_count", "coalesced_from_revision", "incarnation", "old_value", "revision", "timestamp", "update_metadata", "update_source", "update_type", "variable", "variable_id"]
    class UpdateMetadataEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    COALESCED_COUNT_FIELD_NUMBER: _ClassVar[int]
    COALESCED_FROM_REVISION_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    OLD_VALUE_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    UPDATE_METADATA_FIELD_NUMBER: _ClassVar[int]
    UPDATE_SOURCE_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TYPE_FIELD_NUMBER: _ClassVar[int]
    VARIABLE_FIELD_NUMBER: _ClassVar[int]
    VARIABLE_ID_FIELD_NUMBER: _ClassVar[int]
    coalesced_count: int
    coalesced_from_revision: int
    incarnation: str
    old_value: Value
    revision: int
    timestamp: _timestamp_pb2.Timestamp
    update_metadata: _containers.ScalarMap[str, str]
    update_source: str
    update_type: str
    variable: Variable
    variable_id: str
    def __init__(self, variable_id: _Optional[str] = ..., variable: _Optional[_Union[Variable, _Mapping]] = ..., old_value: _Optional[_Union[Value, _Mapping]] = ..., update_source: _Optional[str] = ..., update_metadata: _Optional[_Mapping[str, str]] = ..., timestamp: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., update_type: _Optional[str] = ..., revision: _Optional[int] = ..., coalesced_count: _Optional[int] = ..., coalesced_from_revision: _Optional[int] = ..., incarnation: _Optional[str] = ...) -> None: ...

class VariableUpdateBatch(_message.Message):
    __slots__ = ["updates"]
    UPDATES_FIELD_NUMBER: _ClassVar[int]
    updates: _containers.RepeatedCompositeFieldContainer[VariableUpdate]
    def __init__(self, updates: _Optional[_Iterable[_Union[VariableUpdate, _Mapping]]] = ...) -> None: ...

class WatchCancel(_message.Message):
    __slots__ = ["watch_id"]
    WATCH_ID_FIELD_NUMBER: _ClassVar[int]
    watch_id: int
    def __init__(self, watch_id: _Optional[int] = ...) -> None: ...

class WatchCreate(_message.Message):
    __slots__ = ["request", "view", "watch_id"]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    VIEW_FIELD_NUMBER: _ClassVar[int]
    WATCH_ID_FIELD_NUMBER: _ClassVar[int]
    request: WatchVariablesRequest
    view: View
    watch_id: int
    def __init__(self, watch_id: _Optional[int] = ..., request: _Optional[_Union[WatchVariablesRequest, _Mapping]] = ..., view: _Optional[_Union[View, str]] = ...) -> None: ...

class WatchCreated(_message.Message):
    __slots__ = ["incarnation", "snapshot_revision"]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_REVISION_FIELD_NUMBER: _ClassVar[int]
    incarnation: str
    snapshot_revision: int
    def __init__(self, snapshot_revision: _Optional[int] = ..., incarnation: _Optional[str] = ...) -> None: ...

class WatchEnded(_message.Message):
    __slots__ = ["code", "message", "metadata", "reason"]
    class MetadataEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    metadata: _containers.ScalarMap[str, str]
    reason: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ..., reason: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class WatchEvent(_message.Message):
    __slots__ = ["created", "ended", "update", "watch_ids"]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    ENDED_FIELD_NUMBER: _ClassVar[int]
    UPDATE_FIELD_NUMBER: _ClassVar[int]
    WATCH_IDS_FIELD_NUMBER: _ClassVar[int]
    created: WatchCreated
    ended: WatchEnded
    update: VariableUpdate
    watch_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, watch_ids: _Optional[_Iterable[int]] = ..., update: _Optional[_Union[VariableUpdate, _Mapping]] = ..., created: _Optional[_Union[WatchCreated, _Mapping]] = ..., ended: _Optional[_Union[WatchEnded, _Mapping]] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ["cancel", "create"]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    CREATE_FIELD_NUMBER: _ClassVar[int]
    cancel: WatchCancel
    create: WatchCreate
    def __init__(self, create: _Optional[_Union[WatchCreate, _Mapping]] = ..., cancel: _Optional[_Union[WatchCancel, _Mapping]] = ...) -> None: ...

class WatchResponse(_message.Message):
    __slots__ = ["events"]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[WatchEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[WatchEvent, _Mapping]]] = ...) -> None: ...

class WatchVariablesRequest(_message.Message):
    __slots__ = ["coalesce", "filters", "heartbeat_interval", "incarnation", "include_initial_values", "max_batch_delay", "max_batch_size", "options", "pattern", "session_id", "start_revision", "variable_identifiers"]
    class OptionsEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    COALESCE_FIELD_NUMBER: _ClassVar[int]
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_INITIAL_VALUES_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_DELAY_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    PATTERN_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    START_REVISION_FIELD_NUMBER: _ClassVar[int]
    VARIABLE_IDENTIFIERS_FIELD_NUMBER: _ClassVar[int]
    coalesce: bool
    filters: _containers.RepeatedCompositeFieldContainer[FilterSpec]
    heartbeat_interval: _duration_pb2.Duration
    incarnation: str
    include_initial_values: bool
    max_batch_delay: _duration_pb2.Duration
    max_batch_size: int
    options: _containers.ScalarMap[str, str]
    pattern: str
    session_id: str
    start_revision: int
    variable_identifiers: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, session_id: _Optional[str] = ..., variable_identifiers: _Optional[_Iterable[str]] = ..., include_initial_values: bool = ..., options: _Optional[_Mapping[str, str]] = ..., pattern: _Optional[str] = ..., start_revision: _Optional[int] = ..., heartbeat_interval: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., filters: _Optional[_Iterable[_Union[FilterSpec, _Mapping]]] = ..., max_batch_size: _Optional[int] = ..., max_batch_delay: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., coalesce: bool = ..., incarnation: _Optional[str] = ...) -> None: ...

class WriteVariablesRequest(_message.Message):
    __slots__ = ["atomic", "session_id", "small_acks", "updates"]
    ATOMIC_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SMALL_ACKS_FIELD_NUMBER: _ClassVar[int]
    UPDATES_FIELD_NUMBER: _ClassVar[int]
    atomic: bool
    session_id: str
    small_acks: bool
    updates: _containers.RepeatedCompositeFieldContainer[SetVariableRequest]
    def __init__(self, session_id: _Optional[str] = ..., updates: _Optional[_Iterable[_Union[SetVariableRequest, _Mapping]]] = ..., atomic: bool = ..., small_acks: bool = ...) -> None: ...

class WriteVariablesResponse(_message.Message):
    __slots__ = ["log_position", "results", "revision", "revisions", "sequence", "variable_ids", "versions"]
    LOG_POSITION_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    REVISIONS_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    VARIABLE_IDS_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    log_position: int
    results: _containers.RepeatedCompositeFieldContainer[SetVariableResult]
    revision: int
    revisions: _containers.RepeatedScalarFieldContainer[int]
    sequence: int
    variable_ids: _containers.RepeatedScalarFieldContainer[str]
    versions: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, sequence: _Optional[int] = ..., results: _Optional[_Iterable[_Union[SetVariableResult, _Mapping]]] = ..., revision: _Optional[int] = ..., variable_ids: _Optional[_Iterable[str]] = ..., versions: _Optional[_Iterable[int]] = ..., revisions: _Optional[_Iterable[int]] = ..., log_position: _Optional[int] = ...) -> None: ...

class VariableType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class View(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []
