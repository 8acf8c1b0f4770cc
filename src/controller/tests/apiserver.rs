//! A mocked apiserver (`tower-test`) that answers scripted requests in order and
//! records events apart.

use super::*;

/// One request the apiserver received.
#[derive(Clone, Debug)]
pub(super) struct Recorded {
    pub(super) method: Method,
    pub(super) path: String,
    pub(super) query: Vec<(String, String)>,
    pub(super) content_type: Option<String>,
    pub(super) body: Value,
}

impl Recorded {
    pub(super) fn query(&self, key: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    pub(super) fn describe(&self) -> String {
        let q: Vec<_> = self.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("{} {}?{} ({})", self.method, self.path, q.join("&"), self.content_type.as_deref().unwrap_or("-"))
    }

    /// The value a merge patch gives the `start-pending` annotation.
    pub(super) fn pending_value(&self) -> &Value {
        &self.body["metadata"]["annotations"][START_PENDING_ANNOTATION]
    }

    /// The status a server-side apply of `/status` sets.
    pub(super) fn applied_status(&self) -> ContinuousExportStatus {
        assert_eq!(self.body["apiVersion"], "adsexport.io/v1alpha1");
        assert_eq!(self.body["kind"], "ContinuousExport");
        serde_json::from_value(self.body["status"].clone()).expect("status body")
    }

    /// Event `type` and `reason`.
    pub(super) fn event(&self) -> (String, String) {
        let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        (s(&self.body["type"]), s(&self.body["reason"]))
    }
}

/// One expected request and its answer.
pub(super) struct Expect {
    pub(super) method: Method,
    pub(super) path: String,
    pub(super) content_type: Option<&'static str>,
    pub(super) query: Vec<(&'static str, &'static str)>,
    pub(super) status: StatusCode,
    pub(super) reply: Value,
}

impl Expect {
    pub(super) fn new(
        method: Method,
        path: &str,
        content_type: Option<&'static str>,
        reply: &ContinuousExport,
    ) -> Self {
        Self {
            method,
            path: path.into(),
            content_type,
            query: Vec::new(),
            status: StatusCode::OK,
            reply: serde_json::to_value(reply).expect("object JSON"),
        }
    }

    /// `GET` of the object.
    pub(super) fn get(reply: &ContinuousExport) -> Self {
        Self::new(Method::GET, OBJ_PATH, None, reply)
    }

    /// A merge patch of the object (the `start-pending` annotation).
    pub(super) fn merge_patch(reply: &ContinuousExport) -> Self {
        Self::new(Method::PATCH, OBJ_PATH, Some(MERGE), reply)
    }

    /// A JSON patch of the object (the finalizer helper).
    pub(super) fn json_patch(reply: &ContinuousExport) -> Self {
        Self::new(Method::PATCH, OBJ_PATH, Some(JSON_PATCH), reply)
    }

    /// A forced server-side apply of `/status` by the operator's field manager.
    pub(super) fn apply_status(reply: &ContinuousExport) -> Self {
        let mut e = Self::new(Method::PATCH, &format!("{OBJ_PATH}/status"), Some(APPLY), reply);
        e.query = vec![("fieldManager", FIELD_MANAGER), ("force", "true")];
        e
    }

    /// Answers with a `Status` failure instead.
    pub(super) fn fails(mut self, code: u16, reason: &str) -> Self {
        self.status = StatusCode::from_u16(code).expect("status code");
        self.reply = json!({
            "apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
            "reason": reason, "message": format!("mock: {reason}"), "code": code,
        });
        self
    }

    pub(super) fn mismatch(&self, got: &Recorded) -> Option<String> {
        let ct = got.content_type.as_deref();
        let query_ok = self.query.iter().all(|(k, v)| got.query(k) == Some(*v));
        if got.method == self.method && got.path == self.path && ct == self.content_type && query_ok {
            return None;
        }
        let q: Vec<_> = self.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        Some(format!(
            "expected {} {}?{} ({}), got {}",
            self.method,
            self.path,
            q.join("&"),
            self.content_type.unwrap_or("-"),
            got.describe()
        ))
    }
}

#[derive(Default)]
pub(super) struct ServerState {
    pub(super) script: VecDeque<Expect>,
    pub(super) requests: Vec<Recorded>,
    pub(super) events: Vec<Recorded>,
    pub(super) failures: Vec<String>,
}

/// The scripted apiserver behind a [`Client`].
pub(super) struct ApiServer {
    pub(super) state: Arc<Mutex<ServerState>>,
    pub(super) task: JoinHandle<()>,
}

/// What the apiserver saw: object requests (in order) and events.
pub(super) struct Seen {
    pub(super) requests: Vec<Recorded>,
    pub(super) events: Vec<Recorded>,
}

impl Seen {
    pub(super) fn event_reasons(&self) -> Vec<(String, String)> {
        self.events.iter().map(Recorded::event).collect()
    }
}

pub(super) fn reply(status: StatusCode, body: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(body).expect("reply JSON")))
        .expect("response")
}

/// A client whose requests are answered by `script`, in order.
pub(super) fn apiserver(script: Vec<Expect>) -> (Client, ApiServer) {
    let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let state = Arc::new(Mutex::new(ServerState { script: script.into(), ..ServerState::default() }));
    let shared = state.clone();
    let task = tokio::spawn(async move {
        while let Some((req, send)) = handle.next_request().await {
            let (parts, body) = req.into_parts();
            let bytes = body.collect_bytes().await.expect("request body");
            let body = if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
            };
            let query = parts
                .uri
                .query()
                .unwrap_or_default()
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (k.to_owned(), v.to_owned())
                })
                .collect();
            let got = Recorded {
                method: parts.method,
                path: parts.uri.path().to_owned(),
                query,
                content_type: parts.headers.get("content-type").and_then(|v| v.to_str().ok()).map(str::to_owned),
                body,
            };
            let mut st = shared.lock().unwrap_or_else(|p| p.into_inner());
            if got.path.starts_with(EVENTS_PATH) {
                // Recorder: POST a new event, or merge-patch a repeated one. Echo it back.
                let code = if got.method == Method::POST { StatusCode::CREATED } else { StatusCode::OK };
                send.send_response(reply(code, &got.body));
                st.events.push(got);
                continue;
            }
            let n = st.requests.len();
            let answer = match st.script.pop_front() {
                None => {
                    st.failures.push(format!("request #{n}: unexpected {}", got.describe()));
                    None
                }
                Some(exp) => match exp.mismatch(&got) {
                    Some(why) => {
                        st.failures.push(format!("request #{n}: {why}"));
                        None
                    }
                    None => Some((exp.status, exp.reply)),
                },
            };
            let (code, body) = answer.unwrap_or_else(|| {
                let e = Expect::get(&object()).fails(500, "UnexpectedRequest");
                (e.status, e.reply)
            });
            send.send_response(reply(code, &body));
            st.requests.push(got);
        }
    });
    (Client::new(svc, "default"), ApiServer { state, task })
}

impl ApiServer {
    /// Stops the server and fails the test on an unexpected request or an unused
    /// expectation; returns what it saw. Call it before asserting on reconcile's result,
    /// so a script mismatch is reported as such.
    pub(super) async fn finish(self) -> Seen {
        self.task.abort();
        if let Err(e) = self.task.await
            && e.is_panic()
        {
            std::panic::resume_unwind(e.into_panic());
        }
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut failures = std::mem::take(&mut st.failures);
        failures.extend(st.script.iter().map(|e| format!("expected request never came: {} {}", e.method, e.path)));
        let seen: Vec<_> = st.requests.iter().map(Recorded::describe).collect();
        assert!(
            failures.is_empty(),
            "apiserver script failed:\n  {}\nrequests seen:\n  {}",
            failures.join("\n  "),
            seen.join("\n  ")
        );
        Seen { requests: std::mem::take(&mut st.requests), events: std::mem::take(&mut st.events) }
    }
}
