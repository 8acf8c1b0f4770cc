//! Classification of ADS failures into condition reasons and retry classes
//! (docs/architecture.md, "Failures"). Only ADS's answers (and the SDK's failures to
//! get one) live here; the controller's own reasons are `controller::failure::Cause`.

use std::fmt;

use super::Operation;

/// Why a call to ADS failed, as written into a condition's `reason`.
///
/// Each value names the ADS error (or SDK failure) it stands for; see [`Reason::classify_code`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// `HomeRegionNotSetException`: the Migration Hub home region is not set, or the
    /// call went to another region.
    HomeRegionNotSet,
    /// `AuthorizationErrorException`, or the SDK could not find or use credentials.
    AuthorizationError,
    /// `ServerInternalErrorException` or another HTTP 5xx answer.
    ServerError,
    /// A throttling answer (`ThrottlingException` and kin).
    Throttled,
    /// No answer: connection refused, DNS failure, timeout.
    Unreachable,
    /// `ConflictErrorException`: another export is already active in the region.
    Conflict,
    /// `InvalidParameterException` or `InvalidParameterValueException`.
    InvalidParameter,
    /// `OperationNotPermittedException`.
    OperationNotPermitted,
    /// `ResourceNotFoundException`: ADS does not know the export ID.
    NotFound,
    /// `ResourceInUseException`: the export is busy (e.g. still starting).
    ResourceInUse,
    /// Anything else ADS or the SDK answered.
    Unknown,
}

impl Reason {
    /// The condition reason string (CamelCase; the README lists them).
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::HomeRegionNotSet => "HomeRegionNotSet",
            Reason::AuthorizationError => "AuthorizationError",
            Reason::ServerError => "ServerError",
            Reason::Throttled => "Throttled",
            Reason::Unreachable => "Unreachable",
            Reason::Conflict => "Conflict",
            Reason::InvalidParameter => "InvalidParameter",
            Reason::OperationNotPermitted => "OperationNotPermitted",
            Reason::NotFound => "NotFound",
            Reason::ResourceInUse => "ResourceInUse",
            Reason::Unknown => "UnknownError",
        }
    }

    /// Whether retrying can help without a change by a human.
    pub fn class(self) -> ErrorClass {
        match self {
            Reason::InvalidParameter | Reason::OperationNotPermitted | Reason::NotFound => ErrorClass::Terminal,
            _ => ErrorClass::Recoverable,
        }
    }

    /// Maps an AWS error code (the `__type` of an awsJson1.1 error body, without any
    /// namespace prefix) and the HTTP status to a reason.
    pub fn classify_code(code: Option<&str>, http_status: Option<u16>) -> Reason {
        match code.unwrap_or_default() {
            "HomeRegionNotSetException" => Reason::HomeRegionNotSet,
            "AuthorizationErrorException"
            | "AccessDeniedException"
            | "UnrecognizedClientException"
            | "InvalidSignatureException"
            | "SignatureDoesNotMatch"
            | "IncompleteSignature"
            | "MissingAuthenticationToken"
            | "MissingAuthenticationTokenException"
            | "ExpiredToken"
            | "ExpiredTokenException"
            | "InvalidClientTokenId" => Reason::AuthorizationError,
            "ServerInternalErrorException" | "InternalFailure" | "ServiceUnavailable" => Reason::ServerError,
            "ThrottlingException"
            | "Throttling"
            | "ThrottledException"
            | "RequestThrottledException"
            | "TooManyRequestsException"
            | "RequestLimitExceeded"
            | "ProvisionedThroughputExceededException"
            | "SlowDown" => Reason::Throttled,
            "ConflictErrorException" => Reason::Conflict,
            "InvalidParameterException" | "InvalidParameterValueException" => Reason::InvalidParameter,
            "OperationNotPermittedException" => Reason::OperationNotPermitted,
            "ResourceNotFoundException" => Reason::NotFound,
            "ResourceInUseException" => Reason::ResourceInUse,
            _ => match http_status {
                Some(429) => Reason::Throttled,
                Some(401 | 403) => Reason::AuthorizationError,
                Some(s) if s >= 500 => Reason::ServerError,
                _ => Reason::Unknown,
            },
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether an error is worth retrying on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// Retry with exponential backoff; the condition says when.
    Recoverable,
    /// Stop retrying (`Stalled=True`) until the spec changes.
    Terminal,
}

/// A failed ADS call, classified.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{operation}: {reason}: {message}")]
pub struct AdsError {
    /// The ADS operation that failed.
    pub operation: Operation,
    /// Condition reason.
    pub reason: Reason,
    /// A one-line, human-readable message (from ADS when it sent one). Never holds
    /// credentials or request signatures.
    pub message: String,
    /// Whether the request may have taken effect although the call failed: no answer
    /// arrived (timeouts, dropped connections), the answer was unreadable, or ADS
    /// answered a server error (HTTP 5xx, `ServerInternalErrorException`). A Start
    /// that fails this way may have created an export. Throttling and 4xx errors are
    /// not ambiguous: nothing was done.
    pub ambiguous: bool,
}

impl AdsError {
    /// A classified error from its parts.
    pub fn new(operation: Operation, reason: Reason, message: impl Into<String>) -> Self {
        Self { operation, reason, message: message.into(), ambiguous: false }
    }

    /// Retry class of this error's reason.
    pub fn class(&self) -> ErrorClass {
        self.reason.class()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_code_has_its_reason_and_class() {
        use ErrorClass::*;
        let table = [
            ("HomeRegionNotSetException", Reason::HomeRegionNotSet, Recoverable),
            ("AuthorizationErrorException", Reason::AuthorizationError, Recoverable),
            ("ServerInternalErrorException", Reason::ServerError, Recoverable),
            ("ThrottlingException", Reason::Throttled, Recoverable),
            ("ConflictErrorException", Reason::Conflict, Recoverable),
            ("InvalidParameterException", Reason::InvalidParameter, Terminal),
            ("InvalidParameterValueException", Reason::InvalidParameter, Terminal),
            ("OperationNotPermittedException", Reason::OperationNotPermitted, Terminal),
            ("ResourceNotFoundException", Reason::NotFound, Terminal),
            ("ResourceInUseException", Reason::ResourceInUse, Recoverable),
        ];
        for (code, reason, class) in table {
            let got = Reason::classify_code(Some(code), Some(400));
            assert_eq!(got, reason, "{code}");
            assert_eq!(got.class(), class, "{code}");
        }
    }

    #[test]
    fn unknown_codes_fall_back_on_http_status() {
        assert_eq!(Reason::classify_code(None, Some(503)), Reason::ServerError);
        assert_eq!(Reason::classify_code(Some("Weird"), Some(500)), Reason::ServerError);
        assert_eq!(Reason::classify_code(None, Some(429)), Reason::Throttled);
        assert_eq!(Reason::classify_code(None, Some(403)), Reason::AuthorizationError);
        assert_eq!(Reason::classify_code(Some("Weird"), Some(400)), Reason::Unknown);
        assert_eq!(Reason::Unknown.class(), ErrorClass::Recoverable);
    }
}
