"""AdmissionReview v1: the models the injector reads and writes.

Only the fields waylay uses are typed; everything else is kept (``extra="allow"``)
so a review from a newer API server still parses.
"""

from __future__ import annotations

import base64
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

ADMISSION_API_VERSION = "admission.k8s.io/v1"


class _Loose(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class GroupVersionKind(_Loose):
    group: str = ""
    version: str = ""
    kind: str = ""


class GroupVersionResource(_Loose):
    group: str = ""
    version: str = ""
    resource: str = ""


class AdmissionRequest(_Loose):
    uid: str
    """Echoed in the response; the API server rejects a mismatch."""
    kind: GroupVersionKind = Field(default_factory=GroupVersionKind)
    resource: GroupVersionResource = Field(default_factory=GroupVersionResource)
    sub_resource: str = Field(default="", alias="subResource")
    name: str = ""
    """Empty for pods created with ``generateName``."""
    namespace: str = ""
    operation: str = ""
    object: dict[str, Any] | None = None
    old_object: dict[str, Any] | None = Field(default=None, alias="oldObject")
    dry_run: bool = Field(default=False, alias="dryRun")


class StatusDetails(_Loose):
    code: int = 200
    message: str = ""
    reason: str = ""


class AdmissionResponse(_Loose):
    uid: str
    allowed: bool = True
    patch: str | None = None
    """Base64 of a JSON patch (RFC 6902)."""
    patch_type: Literal["JSONPatch"] | None = Field(default=None, alias="patchType")
    status: StatusDetails | None = None
    warnings: list[str] | None = None

    def patch_ops(self) -> list[dict[str, Any]]:
        """The decoded JSON patch (empty when there is none)."""
        if self.patch is None:
            return []
        ops: list[dict[str, Any]] = json.loads(base64.b64decode(self.patch))
        return ops


class AdmissionReview(_Loose):
    api_version: str = Field(alias="apiVersion")
    kind: Literal["AdmissionReview"]
    request: AdmissionRequest | None = None
    response: AdmissionResponse | None = None

    def reply(self, response: AdmissionResponse) -> dict[str, Any]:
        """The JSON body the API server expects back."""
        return {
            "apiVersion": self.api_version,
            "kind": "AdmissionReview",
            "response": response.model_dump(by_alias=True, exclude_none=True),
        }
