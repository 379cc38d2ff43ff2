"""How SDK failures map to the seam's retry verdict (the wire-level cases run against the emulator)."""

from __future__ import annotations

import pytest
from aws_sdk_bedrock_runtime.models import AccessDeniedException, ThrottlingException, ValidationException
from awscrt.exceptions import AwsCrtError
from smithy_core.exceptions import SmithyError

from runtime.speech.nova_sonic import map_error


@pytest.mark.parametrize(("exc", "code", "retryable"), [
    (ValidationException(message="System instability detected. Please retry your request."),
     "validation_transient", True),
    (ValidationException(message="InternalErrorCode=531::RST_STREAM closed stream"), "validation_transient", True),
    (ValidationException(message="Invalid input request"), "validation_error", False),
    (ThrottlingException(message="slow down"), "throttled", True),
    (AccessDeniedException(message="not allowed to invoke this model"), "access_denied", False),
    (SmithyError("refused"), "model_failure", False),
])
def test_modelled_errors(exc: Exception, code: str, retryable: bool) -> None:
    mapped = map_error(exc)
    assert (mapped.code, mapped.retryable) == (code, retryable)


def test_a_dropped_connection_wrapped_by_the_sdk_is_retryable() -> None:
    try:
        try:
            raise AwsCrtError(code=1047, name="AWS_IO_SOCKET_CONNECTION_REFUSED", message="refused")
        except AwsCrtError as crt:
            raise SmithyError("refused") from crt
    except SmithyError as wrapped:
        mapped = map_error(wrapped)
    assert (mapped.code, mapped.retryable) == ("connection_error", True)
