//! How the operator names itself to the services it calls, so administrators can
//! attribute its load: the `User-Agent` of its Kubernetes requests (apiserver audit
//! logs and the `apiserver_request_total` metrics' `userAgent`) and the app name the
//! AWS SDK adds to its `User-Agent` (`app/<name>`, visible in CloudTrail's `userAgent`).

use http::HeaderValue;

/// `User-Agent` of Kubernetes requests: `ads-export-operator/<crate version>`, e.g.
/// `ads-export-operator/0.1.0` (the `<product>/<version>` form of RFC 9110 §10.1.5).
pub const USER_AGENT: &str = concat!("ads-export-operator/", env!("CARGO_PKG_VERSION"));

/// The AWS SDK app name: `ads-export-operator-<crate version>`. The SDK sends it as
/// `app/ads-export-operator-0.1.0` in `User-Agent` and `x-amz-user-agent`; an app name
/// may not contain `/`, so the version is joined with `-`.
pub const AWS_APP_NAME: &str = concat!("ads-export-operator-", env!("CARGO_PKG_VERSION"));

/// Adds [`USER_AGENT`] to a kube client configuration's default headers (kube sends
/// no `User-Agent` of its own).
pub fn identify(config: &mut kube::Config) {
    config.headers.push((http::header::USER_AGENT, HeaderValue::from_static(USER_AGENT)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kube_requests_carry_the_operator_name_and_version() {
        let mut config = kube::Config::new("https://127.0.0.1:6443".parse().unwrap());
        identify(&mut config);
        let ua: Vec<_> = config.headers.iter().filter(|(k, _)| k == http::header::USER_AGENT).collect();
        assert_eq!(ua.len(), 1);
        assert_eq!(ua[0].1, format!("ads-export-operator/{}", env!("CARGO_PKG_VERSION")).as_str());
        assert!(aws_config::AppName::new(AWS_APP_NAME).is_ok(), "{AWS_APP_NAME} is a valid AWS app name");
    }
}
