//! Warnings admission adds to a response (a ValidatingAdmissionPolicy binding's `Warn`
//! action): collected for the request being served and sent as `Warning` headers
//! (`299 - "<text>"`), which kubectl prints as `Warning: <text>`.

use std::cell::RefCell;
use std::future::Future;

use http::{HeaderValue, Response};

tokio::task_local! {
    static WARNINGS: RefCell<Vec<String>>;
}

/// Adds a warning to the response of the request being served (dropped outside [`collect`]).
pub fn warn(text: String) {
    // Outside a request (e.g. a unit test calling admission directly) there is nobody to tell.
    let _ = WARNINGS.try_with(|w| w.borrow_mut().push(text));
}

/// Runs a request's future, collecting the warnings admission adds while it runs.
pub async fn collect<F: Future>(f: F) -> (F::Output, Vec<String>) {
    WARNINGS
        .scope(RefCell::new(Vec::new()), async {
            let out = f.await;
            (out, WARNINGS.with(RefCell::take))
        })
        .await
}

/// Adds one `Warning` header per warning (RFC 7234 form with code 299 and agent `-`).
pub fn attach<B>(resp: &mut Response<B>, warnings: &[String]) {
    for w in warnings {
        let text: String = w
            .chars()
            // A header carries visible ASCII only.
            .map(|c| {
                if c.is_ascii() && !c.is_control() {
                    c
                } else {
                    '?'
                }
            })
            .collect::<String>()
            .replace('\\', "\\\\")
            .replace('"', "\\\"");
        if let Ok(v) = HeaderValue::from_str(&format!("299 - \"{text}\"")) {
            resp.headers_mut().append(http::header::WARNING, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn warnings_become_headers() {
        let ((), w) = collect(async { warn("a \"quoted\" text".into()) }).await;
        let mut resp = Response::new(());
        attach(&mut resp, &w);
        assert_eq!(resp.headers()["warning"], "299 - \"a \\\"quoted\\\" text\"");
        warn("outside a request".into());
    }
}
