from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Tensor(_message.Message):
    __slots__ = ("shape", "values")
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    shape: _containers.RepeatedScalarFieldContainer[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, shape: _Optional[_Iterable[int]] = ..., values: _Optional[_Iterable[float]] = ...) -> None: ...

class State(_message.Message):
    __slots__ = ("h", "c")
    H_FIELD_NUMBER: _ClassVar[int]
    C_FIELD_NUMBER: _ClassVar[int]
    h: Tensor
    c: Tensor
    def __init__(self, h: _Optional[_Union[Tensor, _Mapping]] = ..., c: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...

class TokenIds(_message.Message):
    __slots__ = ("ids",)
    IDS_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, ids: _Optional[_Iterable[int]] = ...) -> None: ...

class ParseRequest(_message.Message):
    __slots__ = ("model", "text", "token_ids", "initial_state", "return_steps", "return_state", "top_k", "version", "context")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_IDS_FIELD_NUMBER: _ClassVar[int]
    INITIAL_STATE_FIELD_NUMBER: _ClassVar[int]
    RETURN_STEPS_FIELD_NUMBER: _ClassVar[int]
    RETURN_STATE_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    model: str
    text: str
    token_ids: TokenIds
    initial_state: State
    return_steps: bool
    return_state: bool
    top_k: int
    version: str
    context: HomeContext
    def __init__(self, model: _Optional[str] = ..., text: _Optional[str] = ..., token_ids: _Optional[_Union[TokenIds, _Mapping]] = ..., initial_state: _Optional[_Union[State, _Mapping]] = ..., return_steps: _Optional[bool] = ..., return_state: _Optional[bool] = ..., top_k: _Optional[int] = ..., version: _Optional[str] = ..., context: _Optional[_Union[HomeContext, _Mapping]] = ...) -> None: ...

class ContextEntry(_message.Message):
    __slots__ = ("name", "id", "aliases", "area", "floor", "domain")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    AREA_FIELD_NUMBER: _ClassVar[int]
    FLOOR_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    name: str
    id: str
    aliases: _containers.RepeatedScalarFieldContainer[str]
    area: str
    floor: str
    domain: str
    def __init__(self, name: _Optional[str] = ..., id: _Optional[str] = ..., aliases: _Optional[_Iterable[str]] = ..., area: _Optional[str] = ..., floor: _Optional[str] = ..., domain: _Optional[str] = ...) -> None: ...

class HomeContext(_message.Message):
    __slots__ = ("floors", "areas", "entities")
    FLOORS_FIELD_NUMBER: _ClassVar[int]
    AREAS_FIELD_NUMBER: _ClassVar[int]
    ENTITIES_FIELD_NUMBER: _ClassVar[int]
    floors: _containers.RepeatedCompositeFieldContainer[ContextEntry]
    areas: _containers.RepeatedCompositeFieldContainer[ContextEntry]
    entities: _containers.RepeatedCompositeFieldContainer[ContextEntry]
    def __init__(self, floors: _Optional[_Iterable[_Union[ContextEntry, _Mapping]]] = ..., areas: _Optional[_Iterable[_Union[ContextEntry, _Mapping]]] = ..., entities: _Optional[_Iterable[_Union[ContextEntry, _Mapping]]] = ...) -> None: ...

class ImpliedSlot(_message.Message):
    __slots__ = ("name", "value")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: str
    def __init__(self, name: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class Token(_message.Message):
    __slots__ = ("text", "id", "char_start", "char_end")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    CHAR_START_FIELD_NUMBER: _ClassVar[int]
    CHAR_END_FIELD_NUMBER: _ClassVar[int]
    text: str
    id: int
    char_start: int
    char_end: int
    def __init__(self, text: _Optional[str] = ..., id: _Optional[int] = ..., char_start: _Optional[int] = ..., char_end: _Optional[int] = ...) -> None: ...

class IntentScore(_message.Message):
    __slots__ = ("name", "confidence")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    name: str
    confidence: float
    def __init__(self, name: _Optional[str] = ..., confidence: _Optional[float] = ...) -> None: ...

class Slot(_message.Message):
    __slots__ = ("name", "value", "token_start", "token_end", "char_start", "char_end", "confidence", "canonical", "entry_id", "entry_name", "entry_ids")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    TOKEN_START_FIELD_NUMBER: _ClassVar[int]
    TOKEN_END_FIELD_NUMBER: _ClassVar[int]
    CHAR_START_FIELD_NUMBER: _ClassVar[int]
    CHAR_END_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    CANONICAL_FIELD_NUMBER: _ClassVar[int]
    ENTRY_ID_FIELD_NUMBER: _ClassVar[int]
    ENTRY_NAME_FIELD_NUMBER: _ClassVar[int]
    ENTRY_IDS_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: str
    token_start: int
    token_end: int
    char_start: int
    char_end: int
    confidence: float
    canonical: str
    entry_id: str
    entry_name: str
    entry_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., value: _Optional[str] = ..., token_start: _Optional[int] = ..., token_end: _Optional[int] = ..., char_start: _Optional[int] = ..., char_end: _Optional[int] = ..., confidence: _Optional[float] = ..., canonical: _Optional[str] = ..., entry_id: _Optional[str] = ..., entry_name: _Optional[str] = ..., entry_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class Steps(_message.Message):
    __slots__ = ("outputs", "slot_scores", "tags", "tag_names")
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    SLOT_SCORES_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    TAG_NAMES_FIELD_NUMBER: _ClassVar[int]
    outputs: Tensor
    slot_scores: Tensor
    tags: _containers.RepeatedScalarFieldContainer[str]
    tag_names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, outputs: _Optional[_Union[Tensor, _Mapping]] = ..., slot_scores: _Optional[_Union[Tensor, _Mapping]] = ..., tags: _Optional[_Iterable[str]] = ..., tag_names: _Optional[_Iterable[str]] = ...) -> None: ...

class ParseResponse(_message.Message):
    __slots__ = ("model", "tokens", "intent", "top_intents", "slots", "steps", "state", "no_intent", "no_intent_threshold", "model_version", "implied_slots", "no_intent_score", "in_scope_score")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    INTENT_FIELD_NUMBER: _ClassVar[int]
    TOP_INTENTS_FIELD_NUMBER: _ClassVar[int]
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    NO_INTENT_FIELD_NUMBER: _ClassVar[int]
    NO_INTENT_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    IMPLIED_SLOTS_FIELD_NUMBER: _ClassVar[int]
    NO_INTENT_SCORE_FIELD_NUMBER: _ClassVar[int]
    IN_SCOPE_SCORE_FIELD_NUMBER: _ClassVar[int]
    model: str
    tokens: _containers.RepeatedCompositeFieldContainer[Token]
    intent: IntentScore
    top_intents: _containers.RepeatedCompositeFieldContainer[IntentScore]
    slots: _containers.RepeatedCompositeFieldContainer[Slot]
    steps: Steps
    state: State
    no_intent: bool
    no_intent_threshold: float
    model_version: str
    implied_slots: _containers.RepeatedCompositeFieldContainer[ImpliedSlot]
    no_intent_score: str
    in_scope_score: float
    def __init__(self, model: _Optional[str] = ..., tokens: _Optional[_Iterable[_Union[Token, _Mapping]]] = ..., intent: _Optional[_Union[IntentScore, _Mapping]] = ..., top_intents: _Optional[_Iterable[_Union[IntentScore, _Mapping]]] = ..., slots: _Optional[_Iterable[_Union[Slot, _Mapping]]] = ..., steps: _Optional[_Union[Steps, _Mapping]] = ..., state: _Optional[_Union[State, _Mapping]] = ..., no_intent: _Optional[bool] = ..., no_intent_threshold: _Optional[float] = ..., model_version: _Optional[str] = ..., implied_slots: _Optional[_Iterable[_Union[ImpliedSlot, _Mapping]]] = ..., no_intent_score: _Optional[str] = ..., in_scope_score: _Optional[float] = ...) -> None: ...

class ParseStreamRequest(_message.Message):
    __slots__ = ("model", "text", "token_ids", "return_steps", "return_state", "top_k", "version", "context")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_IDS_FIELD_NUMBER: _ClassVar[int]
    RETURN_STEPS_FIELD_NUMBER: _ClassVar[int]
    RETURN_STATE_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    model: str
    text: str
    token_ids: TokenIds
    return_steps: bool
    return_state: bool
    top_k: int
    version: str
    context: HomeContext
    def __init__(self, model: _Optional[str] = ..., text: _Optional[str] = ..., token_ids: _Optional[_Union[TokenIds, _Mapping]] = ..., return_steps: _Optional[bool] = ..., return_state: _Optional[bool] = ..., top_k: _Optional[int] = ..., version: _Optional[str] = ..., context: _Optional[_Union[HomeContext, _Mapping]] = ...) -> None: ...

class ParseStreamResponse(_message.Message):
    __slots__ = ("chunk_index", "total_steps", "intent", "top_intents", "tokens", "slots", "steps", "state", "no_intent", "model", "model_version", "implied_slots", "in_scope_score")
    CHUNK_INDEX_FIELD_NUMBER: _ClassVar[int]
    TOTAL_STEPS_FIELD_NUMBER: _ClassVar[int]
    INTENT_FIELD_NUMBER: _ClassVar[int]
    TOP_INTENTS_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    NO_INTENT_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    IMPLIED_SLOTS_FIELD_NUMBER: _ClassVar[int]
    IN_SCOPE_SCORE_FIELD_NUMBER: _ClassVar[int]
    chunk_index: int
    total_steps: int
    intent: IntentScore
    top_intents: _containers.RepeatedCompositeFieldContainer[IntentScore]
    tokens: _containers.RepeatedCompositeFieldContainer[Token]
    slots: _containers.RepeatedCompositeFieldContainer[Slot]
    steps: Steps
    state: State
    no_intent: bool
    model: str
    model_version: str
    implied_slots: _containers.RepeatedCompositeFieldContainer[ImpliedSlot]
    in_scope_score: float
    def __init__(self, chunk_index: _Optional[int] = ..., total_steps: _Optional[int] = ..., intent: _Optional[_Union[IntentScore, _Mapping]] = ..., top_intents: _Optional[_Iterable[_Union[IntentScore, _Mapping]]] = ..., tokens: _Optional[_Iterable[_Union[Token, _Mapping]]] = ..., slots: _Optional[_Iterable[_Union[Slot, _Mapping]]] = ..., steps: _Optional[_Union[Steps, _Mapping]] = ..., state: _Optional[_Union[State, _Mapping]] = ..., no_intent: _Optional[bool] = ..., model: _Optional[str] = ..., model_version: _Optional[str] = ..., implied_slots: _Optional[_Iterable[_Union[ImpliedSlot, _Mapping]]] = ..., in_scope_score: _Optional[float] = ...) -> None: ...

class ModelInfoRequest(_message.Message):
    __slots__ = ("model", "version")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: str
    def __init__(self, model: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class TensorInfo(_message.Message):
    __slots__ = ("name", "datatype", "shape", "optional")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DATATYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    OPTIONAL_FIELD_NUMBER: _ClassVar[int]
    name: str
    datatype: str
    shape: _containers.RepeatedScalarFieldContainer[str]
    optional: bool
    def __init__(self, name: _Optional[str] = ..., datatype: _Optional[str] = ..., shape: _Optional[_Iterable[str]] = ..., optional: _Optional[bool] = ...) -> None: ...

class ModelInfoResponse(_message.Message):
    __slots__ = ("name", "cell", "nonlinearity", "num_layers", "num_directions", "embedding_dim", "hidden_size", "vocab_size", "intents", "slot_tags", "streaming", "execution_provider", "parity_max_abs_diff", "metrics_json", "parity_json", "inputs", "outputs", "max_tokens", "no_intent_threshold", "version", "versions", "cuda_tf32", "device_max_abs_diff_vs_cpu", "device_max_abs_diff_alone_vs_batch", "no_intent_score")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CELL_FIELD_NUMBER: _ClassVar[int]
    NONLINEARITY_FIELD_NUMBER: _ClassVar[int]
    NUM_LAYERS_FIELD_NUMBER: _ClassVar[int]
    NUM_DIRECTIONS_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_DIM_FIELD_NUMBER: _ClassVar[int]
    HIDDEN_SIZE_FIELD_NUMBER: _ClassVar[int]
    VOCAB_SIZE_FIELD_NUMBER: _ClassVar[int]
    INTENTS_FIELD_NUMBER: _ClassVar[int]
    SLOT_TAGS_FIELD_NUMBER: _ClassVar[int]
    STREAMING_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_PROVIDER_FIELD_NUMBER: _ClassVar[int]
    PARITY_MAX_ABS_DIFF_FIELD_NUMBER: _ClassVar[int]
    METRICS_JSON_FIELD_NUMBER: _ClassVar[int]
    PARITY_JSON_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    NO_INTENT_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    CUDA_TF32_FIELD_NUMBER: _ClassVar[int]
    DEVICE_MAX_ABS_DIFF_VS_CPU_FIELD_NUMBER: _ClassVar[int]
    DEVICE_MAX_ABS_DIFF_ALONE_VS_BATCH_FIELD_NUMBER: _ClassVar[int]
    NO_INTENT_SCORE_FIELD_NUMBER: _ClassVar[int]
    name: str
    cell: str
    nonlinearity: str
    num_layers: int
    num_directions: int
    embedding_dim: int
    hidden_size: int
    vocab_size: int
    intents: _containers.RepeatedScalarFieldContainer[str]
    slot_tags: _containers.RepeatedScalarFieldContainer[str]
    streaming: bool
    execution_provider: str
    parity_max_abs_diff: float
    metrics_json: str
    parity_json: str
    inputs: _containers.RepeatedCompositeFieldContainer[TensorInfo]
    outputs: _containers.RepeatedCompositeFieldContainer[TensorInfo]
    max_tokens: int
    no_intent_threshold: float
    version: str
    versions: _containers.RepeatedScalarFieldContainer[str]
    cuda_tf32: bool
    device_max_abs_diff_vs_cpu: float
    device_max_abs_diff_alone_vs_batch: float
    no_intent_score: str
    def __init__(self, name: _Optional[str] = ..., cell: _Optional[str] = ..., nonlinearity: _Optional[str] = ..., num_layers: _Optional[int] = ..., num_directions: _Optional[int] = ..., embedding_dim: _Optional[int] = ..., hidden_size: _Optional[int] = ..., vocab_size: _Optional[int] = ..., intents: _Optional[_Iterable[str]] = ..., slot_tags: _Optional[_Iterable[str]] = ..., streaming: _Optional[bool] = ..., execution_provider: _Optional[str] = ..., parity_max_abs_diff: _Optional[float] = ..., metrics_json: _Optional[str] = ..., parity_json: _Optional[str] = ..., inputs: _Optional[_Iterable[_Union[TensorInfo, _Mapping]]] = ..., outputs: _Optional[_Iterable[_Union[TensorInfo, _Mapping]]] = ..., max_tokens: _Optional[int] = ..., no_intent_threshold: _Optional[float] = ..., version: _Optional[str] = ..., versions: _Optional[_Iterable[str]] = ..., cuda_tf32: _Optional[bool] = ..., device_max_abs_diff_vs_cpu: _Optional[float] = ..., device_max_abs_diff_alone_vs_batch: _Optional[float] = ..., no_intent_score: _Optional[str] = ...) -> None: ...

class GenerateContext(_message.Message):
    __slots__ = ("h0", "memory")
    H0_FIELD_NUMBER: _ClassVar[int]
    MEMORY_FIELD_NUMBER: _ClassVar[int]
    h0: Tensor
    memory: Tensor
    def __init__(self, h0: _Optional[_Union[Tensor, _Mapping]] = ..., memory: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...

class GenerateRequest(_message.Message):
    __slots__ = ("model", "version", "text", "token_ids", "context", "beam_size", "max_steps", "num_results", "return_states")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_IDS_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    BEAM_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_STEPS_FIELD_NUMBER: _ClassVar[int]
    NUM_RESULTS_FIELD_NUMBER: _ClassVar[int]
    RETURN_STATES_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: str
    text: str
    token_ids: TokenIds
    context: GenerateContext
    beam_size: int
    max_steps: int
    num_results: int
    return_states: bool
    def __init__(self, model: _Optional[str] = ..., version: _Optional[str] = ..., text: _Optional[str] = ..., token_ids: _Optional[_Union[TokenIds, _Mapping]] = ..., context: _Optional[_Union[GenerateContext, _Mapping]] = ..., beam_size: _Optional[int] = ..., max_steps: _Optional[int] = ..., num_results: _Optional[int] = ..., return_states: _Optional[bool] = ...) -> None: ...

class Hypothesis(_message.Message):
    __slots__ = ("tokens", "token_ids", "scores", "score", "finished", "states")
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    TOKEN_IDS_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    tokens: _containers.RepeatedScalarFieldContainer[str]
    token_ids: _containers.RepeatedScalarFieldContainer[int]
    scores: _containers.RepeatedScalarFieldContainer[float]
    score: float
    finished: bool
    states: Tensor
    def __init__(self, tokens: _Optional[_Iterable[str]] = ..., token_ids: _Optional[_Iterable[int]] = ..., scores: _Optional[_Iterable[float]] = ..., score: _Optional[float] = ..., finished: _Optional[bool] = ..., states: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...

class GenerateResponse(_message.Message):
    __slots__ = ("model", "model_version", "tokens", "token_ids", "scores", "score", "finished", "hypotheses", "input_tokens")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    TOKEN_IDS_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    HYPOTHESES_FIELD_NUMBER: _ClassVar[int]
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    model: str
    model_version: str
    tokens: _containers.RepeatedScalarFieldContainer[str]
    token_ids: _containers.RepeatedScalarFieldContainer[int]
    scores: _containers.RepeatedScalarFieldContainer[float]
    score: float
    finished: bool
    hypotheses: _containers.RepeatedCompositeFieldContainer[Hypothesis]
    input_tokens: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, model: _Optional[str] = ..., model_version: _Optional[str] = ..., tokens: _Optional[_Iterable[str]] = ..., token_ids: _Optional[_Iterable[int]] = ..., scores: _Optional[_Iterable[float]] = ..., score: _Optional[float] = ..., finished: _Optional[bool] = ..., hypotheses: _Optional[_Iterable[_Union[Hypothesis, _Mapping]]] = ..., input_tokens: _Optional[_Iterable[str]] = ...) -> None: ...

class GenerateStreamResponse(_message.Message):
    __slots__ = ("step", "token", "token_id", "score", "end", "result")
    STEP_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    step: int
    token: str
    token_id: int
    score: float
    end: bool
    result: GenerateResponse
    def __init__(self, step: _Optional[int] = ..., token: _Optional[str] = ..., token_id: _Optional[int] = ..., score: _Optional[float] = ..., end: _Optional[bool] = ..., result: _Optional[_Union[GenerateResponse, _Mapping]] = ...) -> None: ...
