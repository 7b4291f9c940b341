//! Text that came from a remote party (EC2, IMDS, a proxy, a captive portal) before it reaches a message.
//! Such text can echo the request, headers and tokens included, and can be megabytes long, so every piece of
//! it goes through `sanitize`: one line, at most `max` characters, and anything shaped like a secret
//! replaced by `<redacted>`. Messages show status codes, error codes and request ids; a raw body never.

/// Header and field names whose value is a secret wherever it appears, compared case-insensitively.
const SECRET_NAMES: &[&str] = &[
    "credential=",
    "signature=",
    "authorization",
    "x-amz-security-token",
    "x-aws-ec2-metadata-token",
    "securitytoken",
    "sessiontoken",
    "secretaccesskey",
    "secret_access_key",
    "accesskeyid",
    "access_key_id",
    "session_token",
    "token",
];

/// A run of these characters of at least `SECRET_RUN` with both letters and digits is taken for a key or a
/// token: access key ids (20), secret keys (40), IMDS tokens (56), session tokens (hundreds) are all such
/// runs, while words, instance ids (17 hex digits after `i-`), UUID request ids and ARNs are not.
fn secret_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=' | '_')
}
const SECRET_RUN: usize = 20;

pub const REDACTED: &str = "<redacted>";

/// `text` as one bounded line that carries no secret-shaped part.
pub fn sanitize(text: &str, max: usize) -> String {
    // Only what can be shown is read: the rest is counted, not scanned.
    let total = text.chars().count();
    let head: String = text.chars().take(max.saturating_mul(4)).collect();
    let one_line: String = head.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let collapsed = one_line.split_whitespace().collect::<Vec<_>>().join(" ");
    let redacted = redact_runs(&redact_named(&collapsed));
    bound(&redacted, max, total.saturating_sub(head.chars().count()))
}

fn bound(text: &str, max: usize, unread: usize) -> String {
    let shown = text.chars().count();
    if shown <= max && unread == 0 {
        return text.to_string();
    }
    let cut: String = text.chars().take(max).collect();
    let more = shown.saturating_sub(max) + unread;
    format!("{cut}… ({more} more characters)")
}

/// The value after each secret name (`Credential=ASIA...`, `"Token" : "..."`) becomes `<redacted>`.
fn redact_named(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        let at_word_start = i == 0 || !text.as_bytes()[i - 1].is_ascii_alphanumeric() || after_escape(text, i);
        let hit = SECRET_NAMES.iter().find(|name| at_word_start && lower[i..].starts_with(*name));
        let Some(name) = hit else {
            let c = text[i..].chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
            continue;
        };
        let mut j = i + name.len();
        out.push_str(&text[i..j]);
        // Separators between the name and its value: quotes, colons, equals signs, spaces. Only a name used
        // as a key has a value ("the provided token has expired" keeps its words).
        let mut keyed = name.ends_with('=');
        while j < text.len() && matches!(text.as_bytes()[j], b'"' | b'\'' | b':' | b'=' | b' ') {
            keyed |= text.as_bytes()[j] != b' ';
            out.push(text.as_bytes()[j] as char);
            j += 1;
        }
        if !keyed {
            i = j;
            continue;
        }
        let value_end = text[j..]
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '&' | ',' | '<' | ';' | '\\'))
            .map_or(text.len(), |k| j + k);
        if value_end > j {
            out.push_str(REDACTED);
        }
        i = value_end;
    }
    out
}

/// Whether `text[..i]` ends with an escaped control character (`\n`, `\r`, `\t`, as a `Debug` rendering of
/// an echoed request writes the line breaks between its headers): the name that follows starts a word.
fn after_escape(text: &str, i: usize) -> bool {
    let b = text.as_bytes();
    i >= 2 && b[i - 2] == b'\\' && matches!(b[i - 1], b'n' | b'r' | b't')
}

/// Every long run of key-like characters with letters and digits becomes `<redacted>`.
fn redact_runs(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        let secret_like = run.len() >= SECRET_RUN
            && run.chars().any(|c| c.is_ascii_digit())
            && run.chars().any(|c| c.is_ascii_alphabetic())
            && run != REDACTED;
        out.push_str(if secret_like { REDACTED } else { run });
        run.clear();
    };
    for c in text.chars() {
        if secret_char(c) {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}

/// The innermost cause of an error chain (what actually happened: refused, reset, unknown issuer, the
/// credentials provider's reason), as one sanitized line: such causes can carry remote text.
pub fn root_cause(err: &(dyn std::error::Error + 'static), max: usize) -> String {
    let root = crate::error::chain(err).last().map(ToString::to_string).unwrap_or_default();
    sanitize(without_dump(&root), max)
}

/// `text` up to where a `Debug` rendering of a response, its headers or its body begins: some errors of the
/// SDK print the whole raw response (`error response from IMDS (code: 500). Response { ... body: ... }`), and
/// an error page can echo the request's headers, the IMDS token among them. What comes before is the
/// error's own words.
pub fn without_dump(text: &str) -> &str {
    const DUMPS: &[&str] = &["Response {", "Response{", "SdkBody", "Headers {", "HeaderMap", "body:", "headers:"];
    let cut = DUMPS.iter().filter_map(|d| text.find(d)).min().unwrap_or(text.len());
    text[..cut].trim_end_matches([' ', '.', ',', ':', '('])
}

/// A value EC2 put in a field whose values this build knows (an enum, a state name), for a message about a
/// value it does not know: one short line, redacted like any remote text.
pub fn value(text: &str) -> String {
    sanitize(text, 40)
}

/// An AWS request id as EC2 sends it, a UUID (`8f0e7d3c-1b2a-4c5d-9e8f-0a1b2c3d4e5f`), or nothing: anything
/// else in that header is remote text that only pretends to be one (an echo of a key id, say), never shown.
pub fn request_id(id: &str) -> Option<String> {
    let groups: Vec<&str> = id.split('-').collect();
    let shape = groups.iter().map(|g| g.len()).collect::<Vec<_>>() == [8, 4, 4, 4, 12];
    let ok = shape && groups.iter().all(|g| g.bytes().all(|b| b.is_ascii_hexdigit()));
    ok.then(|| id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_and_tokens_echoed_by_an_error_page_are_redacted() {
        let page = "<html><body>400 Bad Request\nPOST / HTTP/1.1\r\nAuthorization: AWS4-HMAC-SHA256 \
            Credential=ASIAEXAMPLEKEY0000001/20261123/us-west-2/ec2/aws4_request, SignedHeaders=host;x-amz-date, \
            Signature=0123456789abcdef0123456789abcdef\r\nx-amz-security-token: IQoJb3JpZ2luX2VjEJr//////////wEaCXVz\r\n\
            X-aws-ec2-metadata-token: AQAEAFTNrA4eEGx0AQgJ1arIq_Cg==\r\n</body></html>";
        let shown = sanitize(page, 1000);
        for secret in [
            "ASIAEXAMPLEKEY0000001",
            "0123456789abcdef0123456789abcdef",
            "IQoJb3JpZ2luX2VjEJr",
            "AQAEAFTNrA4eEGx0AQgJ1arIq_Cg",
            "AWS4-HMAC-SHA256",
        ] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(!shown.contains('\n') && !shown.contains('\r'), "one line: {shown}");
        assert!(shown.contains("400 Bad Request"), "{shown}");
    }

    #[test]
    fn json_credentials_are_redacted() {
        let doc = r#"{"Code":"Success","AccessKeyId":"ASIAXXXX","SecretAccessKey":"abc/def+ghi","Token":"t0k"}"#;
        let shown = sanitize(doc, 500);
        for secret in ["ASIAXXXX", "abc/def+ghi", "t0k"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
    }

    #[test]
    fn ordinary_messages_are_kept_whole() {
        for message in [
            "The instance ID 'i-0123456789abcdef0' does not exist",
            "Request limit exceeded.",
            "RequestLimitExceeded",
            "You are not authorized to perform this operation. User: arn:aws:sts::123456789012:assumed-role/r/i-0123",
            "request id 8f0e7d3c-1b2a-4c5d-9e8f-0a1b2c3d4e5f",
            "Value (sometimes) for parameter HttpTokens is invalid.",
            "ExpiredToken: The provided token has expired.",
            "The security token included in the request is invalid.",
        ] {
            assert_eq!(sanitize(message, 500), message);
        }
    }

    #[test]
    fn long_text_is_bounded_and_says_how_much_was_left_out() {
        let huge = "x ".repeat(5_000_000);
        let shown = sanitize(&huge, 300);
        assert!(shown.chars().count() < 340, "{}", shown.len());
        assert!(shown.ends_with("more characters)"), "{shown}");
        assert_eq!(sanitize("short", 300), "short");
    }

    #[test]
    fn request_ids_are_validated() {
        assert_eq!(
            request_id("8f0e7d3c-1b2a-4c5d-9e8f-0a1b2c3d4e5f").as_deref(),
            Some("8f0e7d3c-1b2a-4c5d-9e8f-0a1b2c3d4e5f")
        );
        assert_eq!(request_id("<html>"), None);
        assert_eq!(request_id(&"a".repeat(65)), None);
        assert_eq!(request_id(""), None);
        // Shaped like an id of letters and dashes, but not a UUID: an echo of an access key id, say.
        assert_eq!(request_id("AKIAIOSFODNN7EXAMPLE"), None);
        assert_eq!(request_id("AKIAIOSF-ODNN-7EXA-MPLE-000000000000"), None);
        assert_eq!(request_id("8f0e7d3c-1b2a-4c5d-9e8f-0a1b2c3d4e5"), None, "one digit short");
    }

    #[test]
    fn a_debug_dump_of_a_response_is_cut_before_it_starts() {
        let err = "error response from IMDS (code: 500). Response { status: StatusCode(500), headers: Headers { \
            headers: {\"content-type\": HeaderValue { _private: H0(\"text/html\") }} }, body: SdkBody { inner: \
            Once(Some(b\"<pre>GET / HTTP/1.1\\nx-aws-ec2-metadata-token: tok-en-VALUE\\n</pre>\")) } }";
        assert_eq!(without_dump(err), "error response from IMDS (code: 500)");
        assert_eq!(without_dump("connection refused"), "connection refused");
    }

    #[test]
    fn a_secret_name_after_an_escaped_line_break_still_names_a_secret() {
        let debug = r"GET / HTTP/1.1\nx-aws-ec2-metadata-token: tok-en-VALUE\nuser-agent: x";
        let shown = sanitize(debug, 500);
        assert!(!shown.contains("tok-en-VALUE"), "{shown}");
        assert!(shown.contains("user-agent"), "{shown}");
    }

    #[test]
    fn an_unknown_value_is_one_short_line() {
        let forged = format!("required\ni-0000000000000000f  us-west-2  running  {}", "x".repeat(200_000));
        let shown = value(&forged);
        assert!(!shown.contains('\n') && shown.chars().count() < 80, "{shown}");
    }
}
