"""Bodies of internal HTTP calls (node -> hub). Paths are under /internal/v1 and need the internal token."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from shared.contracts.events import BindingSnapshot


class InternalModel(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class DirectoryRegistration(InternalModel):
    """POST /internal/v1/directory/persons: a node registers (or updates) one of its persons."""

    id_hash: str
    id_no_masked: str
    name_hash: str
    psn_no: str
    insuplc_admdvs: str
    insutype: str
    password_hash: str | None = None
    face_hash: str | None = None
    insured: bool = True


class DirectoryRegistrationBatch(InternalModel):
    persons: list[DirectoryRegistration] = Field(max_length=10000)


class DirectoryRegistrationResult(InternalModel):
    registered: int


class BindingCreateRequest(InternalModel):
    """POST /internal/v1/bindings: the giver's node asks the hub to verify kinship and open a binding."""

    giver_psn_no: str
    giver_admdvs: str
    giver_id_hash: str
    relative_id_hash: str
    relative_name_hash: str
    relative_name_masked: str
    relation: str
    request_key: str


class BindingActionRequest(InternalModel):
    """POST /internal/v1/bindings/{id}:confirm or :end, on behalf of one party."""

    psn_no: str
    reason: str | None = None


class BindingResponse(InternalModel):
    binding: BindingSnapshot
