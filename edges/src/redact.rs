//! The one URL redaction, for every error, log line and `--print-config`
//! of both binaries: a password must never reach a journal.
//!
//! `scheme://user:password@host/path?query` becomes
//! `scheme://***@host/path?***`: the user info and the query (where tokens
//! travel) are replaced, the host and path stay so the line still says
//! where. [`url_and_path`] also hides the path, for webhooks, whose path is
//! where chat services put their tokens. Text that is not a URL is returned
//! with any `user:password@` it seems to hold hidden all the same.

/// What redaction replaces a secret with.
pub const MASK: &str = "***";

/// `url` with its user info and query replaced by `***`.
pub fn url(url: &str) -> String {
    redact(url, false)
}

/// `url` with its user info, path and query replaced by `***` (webhooks).
pub fn url_and_path(url: &str) -> String {
    redact(url, true)
}

/// Free text (an error, a log line) with every URL in it redacted as by
/// [`url`]: for messages that quote what they could not read, such as a
/// TOML error showing the offending line.
pub fn in_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        // The scheme: the letters, digits, `+`, `-`, `.` before `://`.
        let start = rest[..at]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .map_or(0, |i| i + 1);
        let len = rest[at..]
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | '`'))
            .unwrap_or(rest.len() - at);
        let end = at + len;
        out.push_str(&rest[..start]);
        out.push_str(&url(&rest[start..end]));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

fn redact(url: &str, hide_path: bool) -> String {
    let url = url.trim();
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (Some(s), r),
        None => (None, url),
    };
    // The authority ends at the first `/`, `?` or `#`.
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let host = match authority.rsplit_once('@') {
        Some((_, host)) => format!("{MASK}@{host}"),
        None => authority.to_owned(),
    };
    let (before_frag, _frag) = tail.split_once('#').unwrap_or((tail, ""));
    let (path, query) = match before_frag.split_once('?') {
        Some((p, _)) => (p, Some(MASK)),
        None => (before_frag, None),
    };
    let path = if hide_path && !path.is_empty() && path != "/" {
        format!("/{MASK}")
    } else {
        path.to_owned()
    };
    let mut out = String::with_capacity(url.len());
    if let Some(s) = scheme {
        out.push_str(s);
        out.push_str("://");
    }
    out.push_str(&host);
    out.push_str(&path);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_info_and_query_are_masked_host_and_path_stay() {
        assert_eq!(
            url("http://admin:hunter2@orch-1:9464/metrics"),
            "http://***@orch-1:9464/metrics"
        );
        assert_eq!(
            url("http://h:1/metrics?token=abc"),
            "http://h:1/metrics?***"
        );
        assert_eq!(url("http://h:1/metrics"), "http://h:1/metrics");
        assert_eq!(url("http://u:p@h"), "http://***@h");
        // An `@` in the path is not user info.
        assert_eq!(url("http://h/a@b"), "http://h/a@b");
        // A password holding `@` or `/`-free junk is still hidden whole.
        assert_eq!(url("http://u:p@ss@h:1/"), "http://***@h:1/");
        // Not a URL at all: a user:password@ prefix is still hidden.
        assert_eq!(url("u:p@h:1"), "***@h:1");
        assert_eq!(url("#frag-only"), "");
    }

    #[test]
    fn every_url_in_a_text_is_masked() {
        let t = "TOML parse error at line 3\n  |\n3 | url = \"http://u:pw@h:1/x\" oops\n  | bad";
        let r = in_text(t);
        assert!(!r.contains("pw"), "{r}");
        assert!(r.contains("\"http://***@h:1/x\" oops"), "{r}");
        assert_eq!(
            in_text("a https://x:y@h b http://h2/"),
            "a https://***@h b http://h2/"
        );
        assert_eq!(in_text("no url here"), "no url here");
    }

    #[test]
    fn webhook_paths_are_masked_too() {
        assert_eq!(
            url_and_path("https://hooks.example/services/T0/B0/XYZ?x=1"),
            "https://hooks.example/***?***"
        );
        assert_eq!(url_and_path("http://h:9/"), "http://h:9/");
        assert!(!url_and_path("http://u:secret@h/secret").contains("secret"));
    }
}
