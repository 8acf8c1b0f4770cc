//! The one function that classifies the SDK's errors of the ADS operations into an
//! [`AdsError`] ([`classify`]), as a documented table, and the [`OperationError`]
//! trait that knows each operation's modeled errors.

use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_applicationdiscovery::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_applicationdiscovery::operation::describe_continuous_exports::DescribeContinuousExportsError;
use aws_sdk_applicationdiscovery::operation::start_continuous_export::StartContinuousExportError;
use aws_sdk_applicationdiscovery::operation::stop_continuous_export::StopContinuousExportError;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_types::error::ErrorMetadata;

use super::{AdsError, Operation, Reason};

/// A typed ADS operation error (one per operation) that knows its [`Reason`].
///
/// Implemented for the three operation error enums of the SDK; the match is
/// exhaustive over the documented variants, and unmodeled errors fall back on
/// their error code and HTTP status.
pub trait OperationError: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static {
    /// The reason for a modeled variant, or `None` for `Unhandled`.
    fn modeled_reason(&self) -> Option<Reason>;
}

impl OperationError for StartContinuousExportError {
    fn modeled_reason(&self) -> Option<Reason> {
        use StartContinuousExportError as E;
        Some(match self {
            E::AuthorizationErrorException(_) => Reason::AuthorizationError,
            E::ConflictErrorException(_) => Reason::Conflict,
            E::HomeRegionNotSetException(_) => Reason::HomeRegionNotSet,
            E::InvalidParameterException(_) | E::InvalidParameterValueException(_) => Reason::InvalidParameter,
            E::OperationNotPermittedException(_) => Reason::OperationNotPermitted,
            E::ResourceInUseException(_) => Reason::ResourceInUse,
            E::ServerInternalErrorException(_) => Reason::ServerError,
            _ => return None,
        })
    }
}

impl OperationError for DescribeContinuousExportsError {
    fn modeled_reason(&self) -> Option<Reason> {
        use DescribeContinuousExportsError as E;
        Some(match self {
            E::AuthorizationErrorException(_) => Reason::AuthorizationError,
            E::HomeRegionNotSetException(_) => Reason::HomeRegionNotSet,
            E::InvalidParameterException(_) | E::InvalidParameterValueException(_) => Reason::InvalidParameter,
            E::OperationNotPermittedException(_) => Reason::OperationNotPermitted,
            E::ResourceNotFoundException(_) => Reason::NotFound,
            E::ServerInternalErrorException(_) => Reason::ServerError,
            _ => return None,
        })
    }
}

impl OperationError for StopContinuousExportError {
    fn modeled_reason(&self) -> Option<Reason> {
        use StopContinuousExportError as E;
        Some(match self {
            E::AuthorizationErrorException(_) => Reason::AuthorizationError,
            E::HomeRegionNotSetException(_) => Reason::HomeRegionNotSet,
            E::InvalidParameterException(_) | E::InvalidParameterValueException(_) => Reason::InvalidParameter,
            E::OperationNotPermittedException(_) => Reason::OperationNotPermitted,
            E::ResourceInUseException(_) => Reason::ResourceInUse,
            E::ResourceNotFoundException(_) => Reason::NotFound,
            E::ServerInternalErrorException(_) => Reason::ServerError,
            _ => return None,
        })
    }
}

/// Classifies any SDK failure of an ADS operation into an [`AdsError`]
/// (reason, retry class via [`AdsError::class`], message).
///
/// What maps to what (`ambiguous` says whether the request may have taken effect in
/// AWS although the call failed):
///
/// | [`SdkError`] variant | reason | `ambiguous` |
/// |---|---|---|
/// | `ServiceError` with reason `ServerError` (`ServerInternalErrorException`, `InternalFailure`, `ServiceUnavailable`, any other HTTP 5xx) | `ServerError` | `true`: the server failed while or after handling the request, so it may have been carried out (a Start answered 500 may have created an export) |
/// | `ServiceError` otherwise | the modeled variant's ([`OperationError::modeled_reason`]), else [`Reason::classify_code`] on the error code and HTTP status | `false`: throttling and 4xx errors are answered before anything is done |
/// | any variant whose [`std::error::Error::source`] chain holds an [`aws_credential_types::provider::error::CredentialsError`] (no credentials in the chain, provider failed or timed out) or an [`aws_sigv4::http_request::SigningError`] (the request could not be SigV4-signed) | `AuthorizationError` | `false` |
/// | `ConstructionFailure` otherwise (the SDK rejected its configuration or the input before building a request) | `UnknownError` | `false` |
/// | `TimeoutError` (attempt or operation timeout) | `Unreachable` | `true` |
/// | `DispatchFailure` of a [`ConnectorError`](aws_smithy_runtime_api::client::result::ConnectorError) the caller caused (`is_user`) | `Unreachable` | `false` |
/// | `DispatchFailure` otherwise (connection refused or reset, DNS, endpoint resolution) | `Unreachable` | `true` |
/// | `ResponseError` (an answer that could not be parsed) | [`Reason::classify_code`] on the HTTP status: `ServerError` for 5xx, `Throttled` for 429, `AuthorizationError` for 401/403, else `UnknownError` | `true` |
///
/// In `aws-smithy-runtime` the credentials are resolved and the request is signed in
/// the before-transmit phase of each attempt, so credential and signing failures
/// arrive as `DispatchFailure(ConnectorError::other(..))`, not as
/// `ConstructionFailure`; nothing was sent, hence `ambiguous: false`. Two such
/// failures cannot be recognised because their types are private to the SDK: the
/// identity cache's own load timeout (`aws-smithy-runtime`'s `TimedOutError`) and
/// `aws-runtime`'s `SigV4SigningError` (missing signing region or name); they map to
/// `Unreachable`, ambiguous.
///
/// The message is ADS's own for a service error; otherwise it is built from the
/// `Display` of each error in the [`std::error::Error::source`] chain (see
/// `error_chain`), after a prefix saying what failed (`could not load AWS
/// credentials`, `timed out waiting for AWS`, ...). Never from `Debug`, which would put
/// the SDK's dump of the request or response (headers included) into conditions and
/// events. Always one line, at most 512 characters plus an ellipsis.
pub fn classify<E: OperationError>(operation: Operation, err: &SdkError<E, HttpResponse>) -> AdsError {
    let reason = reason_of(err);
    if !matches!(err, SdkError::ServiceError(_))
        && let Some(what) = auth_failure(err)
    {
        return AdsError::new(operation, reason, format!("{what}: {}", error_chain(err)));
    }
    match err {
        SdkError::ServiceError(se) => {
            let e = se.err();
            let status = se.raw().status().as_u16();
            let message = match (e.message(), e.code()) {
                (Some(m), _) => m.to_owned(),
                (None, Some(_)) => one_line(&e.to_string()),
                (None, None) => format!("HTTP {status} error"),
            };
            // A server error may come after the request took effect; a throttling or
            // client error means nothing was done.
            AdsError { ambiguous: reason == Reason::ServerError, ..AdsError::new(operation, reason, message) }
        }
        SdkError::ConstructionFailure(_) => {
            AdsError::new(operation, reason, format!("could not build the request: {}", error_chain(err)))
        }
        SdkError::TimeoutError(_) => AdsError {
            ambiguous: true,
            ..AdsError::new(operation, reason, format!("timed out waiting for AWS: {}", error_chain(err)))
        },
        SdkError::DispatchFailure(df) => {
            AdsError { ambiguous: !df.is_user(), ..AdsError::new(operation, reason, error_chain(err)) }
        }
        SdkError::ResponseError(re) => {
            let status = re.raw().status().as_u16();
            AdsError {
                ambiguous: true,
                ..AdsError::new(operation, reason, format!("unreadable response (HTTP {status}): {}", error_chain(err)))
            }
        }
        _ => AdsError::new(operation, reason, error_chain(err)),
    }
}

/// The reason [`classify`]'s table gives `err`, for any AWS operation (also Migration
/// Hub Config's `GetHomeRegion`, whose outcomes the metrics count in the same
/// vocabulary): a service error by its modeled variant, else its code and HTTP status
/// ([`Reason::classify_code`]); a credentials or signing failure `AuthorizationError`;
/// a timeout or dispatch failure `Unreachable`; an unreadable answer by its HTTP
/// status; anything else `UnknownError`.
pub(crate) fn reason_of<E: OperationError>(err: &SdkError<E, HttpResponse>) -> Reason {
    match err {
        SdkError::ServiceError(se) => {
            let e = se.err();
            e.modeled_reason().unwrap_or_else(|| Reason::classify_code(e.code(), Some(se.raw().status().as_u16())))
        }
        _ if auth_failure(err).is_some() => Reason::AuthorizationError,
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => Reason::Unreachable,
        SdkError::ResponseError(re) => Reason::classify_code(None, Some(re.raw().status().as_u16())),
        _ => Reason::Unknown,
    }
}

/// Walks `err`'s [`std::error::Error::source`] chain for a credentials failure
/// ([`CredentialsError`]) or a SigV4 signing failure
/// ([`aws_sigv4::http_request::SigningError`]), and says which it found.
pub(super) fn auth_failure(err: &(dyn std::error::Error + 'static)) -> Option<&'static str> {
    std::iter::successors(Some(err), |e| e.source()).find_map(|e| {
        if e.is::<CredentialsError>() {
            Some("could not load AWS credentials")
        } else if e.is::<aws_sigv4::http_request::SigningError>() {
            Some("could not sign the request")
        } else {
            None
        }
    })
}

/// The first transport failure in `err`'s [`std::error::Error::source`] chain: a
/// [`ConnectorError`](aws_smithy_runtime_api::client::result::ConnectorError) of kind
/// I/O or timeout (DNS, connection refused or reset, a connect or read timeout), also
/// when it is wrapped in a credentials provider's error (e.g. STS `AssumeRole`
/// unreachable). A `ConnectorError` of kind "other" is not one: the SDK wraps a
/// failure to load credentials (e.g. STS's `AccessDenied`) in it.
pub(crate) fn transport_failure<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(err), |e| e.source()).find(|e| {
        e.downcast_ref::<aws_smithy_runtime_api::client::result::ConnectorError>()
            .is_some_and(|c| c.is_io() || c.is_timeout())
    })
}

/// The message of `err` and of every error in its [`std::error::Error::source`]
/// chain, each by its `Display` (never `Debug`, which for SDK errors dumps whole
/// requests and responses), joined with `": "`; empty messages and a message equal to
/// the one before it (a wrapper that repeats its source) are left out. The result is
/// one line, capped by [`one_line`].
///
/// One exception: an [`ErrorMetadata`] (the source of every SDK error of an
/// unmodeled code, e.g. an STS `AccessDenied` while loading web-identity credentials)
/// displays itself in `Debug` form (`Error { code: .., message: .. }`); it reads
/// `code: message` here instead.
///
/// E.g. a credentials failure reads `dispatch failure: other: an error occurred while
/// loading credentials: service error: unhandled error (AccessDenied): AccessDenied:
/// Not authorized to perform sts:AssumeRoleWithWebIdentity`.
pub(crate) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    for e in std::iter::successors(Some(err), |e| e.source()) {
        let text = match e.downcast_ref::<ErrorMetadata>() {
            Some(meta) => [meta.code(), meta.message()].into_iter().flatten().collect::<Vec<_>>().join(": "),
            None => e.to_string(),
        };
        let text = one_line(&text);
        if !text.is_empty() && parts.last() != Some(&text) {
            parts.push(text);
        }
    }
    one_line(&parts.join(": "))
}

/// Collapses a multi-line error chain into one line, capped at 512 characters.
fn one_line(s: &str) -> String {
    let mut out: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if out.len() > 512 {
        let cut = (0..=512).rev().find(|i| out.is_char_boundary(*i)).unwrap_or(0);
        out.truncate(cut);
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_applicationdiscovery::types::error::*;
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;

    fn response(status: u16) -> HttpResponse {
        HttpResponse::new(StatusCode::try_from(status).unwrap(), SdkBody::empty())
    }

    fn service<E: OperationError>(e: E, status: u16) -> AdsError {
        classify(Operation::Start, &SdkError::service_error(e, response(status)))
    }

    macro_rules! variants {
        ($enum:ident: $($variant:ident => $reason:ident),+ $(,)?) => {{
            let mut n = 0;
            $(
                // as the SDK's deserializer builds it: code and message in the metadata
                let meta = ErrorMetadata::builder().code(stringify!($variant)).message("m").build();
                let got = service($enum::$variant($variant::builder().message("m").meta(meta).build()), 400);
                assert_eq!(got.reason, Reason::$reason, concat!(stringify!($enum), "::", stringify!($variant)));
                assert_eq!(got.message, "m");
                // only a server error may have taken effect
                assert_eq!(
                    got.ambiguous,
                    Reason::$reason == Reason::ServerError,
                    concat!(stringify!($enum), "::", stringify!($variant))
                );
                n += 1;
            )+
            n
        }};
    }

    #[test]
    fn every_start_variant() {
        let n = variants!(StartContinuousExportError:
            AuthorizationErrorException => AuthorizationError,
            ConflictErrorException => Conflict,
            HomeRegionNotSetException => HomeRegionNotSet,
            InvalidParameterException => InvalidParameter,
            InvalidParameterValueException => InvalidParameter,
            OperationNotPermittedException => OperationNotPermitted,
            ResourceInUseException => ResourceInUse,
            ServerInternalErrorException => ServerError,
        );
        assert_eq!(n, 8);
    }

    #[test]
    fn every_describe_variant() {
        let n = variants!(DescribeContinuousExportsError:
            AuthorizationErrorException => AuthorizationError,
            HomeRegionNotSetException => HomeRegionNotSet,
            InvalidParameterException => InvalidParameter,
            InvalidParameterValueException => InvalidParameter,
            OperationNotPermittedException => OperationNotPermitted,
            ResourceNotFoundException => NotFound,
            ServerInternalErrorException => ServerError,
        );
        assert_eq!(n, 7);
    }

    #[test]
    fn every_stop_variant() {
        let n = variants!(StopContinuousExportError:
            AuthorizationErrorException => AuthorizationError,
            HomeRegionNotSetException => HomeRegionNotSet,
            InvalidParameterException => InvalidParameter,
            InvalidParameterValueException => InvalidParameter,
            OperationNotPermittedException => OperationNotPermitted,
            ResourceInUseException => ResourceInUse,
            ResourceNotFoundException => NotFound,
            ServerInternalErrorException => ServerError,
        );
        assert_eq!(n, 8);
    }

    #[test]
    fn unhandled_errors_use_code_then_status() {
        let generic = |code: Option<&str>| {
            let mut b = ErrorMetadata::builder();
            if let Some(c) = code {
                b = b.code(c);
            }
            StopContinuousExportError::generic(b.build())
        };
        let classified = |code, status| {
            let e = service(generic(code), status);
            (e.reason, e.ambiguous)
        };
        assert_eq!(classified(Some("ThrottlingException"), 400), (Reason::Throttled, false));
        assert_eq!(classified(Some("UnrecognizedClientException"), 400), (Reason::AuthorizationError, false));
        assert_eq!(classified(None, 503), (Reason::ServerError, true));
        assert_eq!(classified(None, 500), (Reason::ServerError, true));
        assert_eq!(classified(Some("InternalFailure"), 500), (Reason::ServerError, true));
        assert_eq!(classified(Some("ServiceUnavailable"), 503), (Reason::ServerError, true));
        assert_eq!(classified(None, 429), (Reason::Throttled, false));
        assert_eq!(classified(None, 403), (Reason::AuthorizationError, false));
        assert_eq!(classified(None, 418), (Reason::Unknown, false));
        assert_eq!(service(generic(None), 503).message, "HTTP 503 error");
    }

    #[test]
    fn transport_failures() {
        type Err = SdkError<StartContinuousExportError, HttpResponse>;
        let c = classify(Operation::Start, &Err::construction_failure("input rejected"));
        assert_eq!((c.reason, c.ambiguous), (Reason::Unknown, false));
        let t = classify(Operation::Start, &Err::timeout_error("slow"));
        assert_eq!((t.reason, t.ambiguous), (Reason::Unreachable, true));
        let io = aws_smithy_runtime_api::client::result::ConnectorError::io("connection refused".into());
        let d = classify(Operation::Start, &Err::dispatch_failure(io));
        assert_eq!((d.reason, d.ambiguous), (Reason::Unreachable, true));
        let r = classify(Operation::Start, &Err::response_error("bad json", response(502)));
        assert_eq!((r.reason, r.ambiguous), (Reason::ServerError, true));
    }
    #[test]
    fn error_chain_joins_displays_and_drops_repeats() {
        #[derive(Debug)]
        struct E(&'static str, Option<Box<E>>);
        impl std::fmt::Display for E {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.0)
            }
        }
        impl std::error::Error for E {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                self.1.as_deref().map(|e| e as _)
            }
        }
        let chain = E(
            "outer",
            Some(Box::new(E(
                "io",
                Some(Box::new(E("io", Some(Box::new(E("", Some(Box::new(E("refused\n  by peer", None))))))))),
            ))),
        );
        assert_eq!(error_chain(&chain), "outer: io: refused by peer");
        let meta = ErrorMetadata::builder().code("AccessDenied").message("no").build();
        assert_eq!(error_chain(&meta), "AccessDenied: no");
        assert_eq!(error_chain(&ErrorMetadata::builder().build()), "");
    }

    #[test]
    fn one_line_collapses_and_caps() {
        assert_eq!(one_line("a\n  b\tc"), "a b c");
        let long = "é".repeat(600);
        assert!(one_line(&long).chars().count() <= 513);
    }
}
