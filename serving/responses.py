"""The JSON response class of the API: orjson bytes, no second validation pass.

Routes declare their pydantic `response_model` (the contract shown in OpenAPI) and
return `JsonBytes` built from plain dicts, so the hot path skips model serialization.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import JSONResponse


class JsonBytes(JSONResponse):
    """`application/json` rendered with orjson (non-string keys allowed)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)
