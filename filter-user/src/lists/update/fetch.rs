//! Fetching and checking one source over HTTPS (RIPEstat or a CIDR text file).

use super::{
    BTreeSet, Cidr, Duration, FromStr, MAX_BODY, MAX_REDIRECTS, MIN_V4_PREFIX, MIN_V6_PREFIX,
    Source, SourceKind, SystemTime, fs, lists, ripestat_request,
};

/// A fetched and parsed source.
pub(super) struct Fetched {
    pub(super) cidrs: BTreeSet<Cidr>,
    pub(super) fetched: SystemTime,
}

/// Fetch `url`: the body of a 2xx response. The agent follows at most
/// [`MAX_REDIRECTS`] redirects and refuses any hop that is not `https://`
/// ([`agent`]); the final address is checked again here.
pub(super) fn http_get(agent: &ureq::Agent, url: &str) -> Result<Vec<u8>, String> {
    let mut resp = agent.get(url).call().map_err(|e| match e {
        ureq::Error::RequireHttpsOnly(to) => format!(
            "{url}: redirected to `{to}`, plain HTTP: refused (sources are fetched over https:// only, redirects included)"
        ),
        ureq::Error::TooManyRedirects => {
            format!("{url}: more than {MAX_REDIRECTS} redirects: refused")
        }
        e => format!("{url}: {e}"),
    })?;
    let status = resp.status();
    if status.is_redirection() {
        return Err(format!(
            "{url}: HTTP status {status} without a usable `Location`"
        ));
    }
    if !status.is_success() {
        return Err(format!("{url}: HTTP status {status}"));
    }
    let at = ureq::ResponseExt::get_uri(&resp);
    if at.scheme_str() != Some("https") {
        return Err(format!(
            "{url}: answered from `{at}`, not https://: refused"
        ));
    }
    resp.body_mut()
        .with_config()
        .limit(MAX_BODY)
        .read_to_vec()
        .map_err(|e| format!("{url}: reading the response: {e}"))
}

/// `bytes` as text, or `location:line: not valid UTF-8`.
pub(super) fn utf8(location: &str, bytes: Vec<u8>) -> Result<String, String> {
    String::from_utf8(bytes).map_err(|e| {
        let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = good.split(|&b| b == b'\n').count();
        format!("{location}:{line}: not valid UTF-8")
    })
}

/// Whether a prefix of length `len` in a `width`-bit family (32 or 128) is
/// broader than [`MIN_V4_PREFIX`] / [`MIN_V6_PREFIX`].
pub fn is_broad(width: u8, len: u8) -> bool {
    len < if width == 32 {
        MIN_V4_PREFIX
    } else {
        MIN_V6_PREFIX
    }
}

/// Why a broad prefix is refused: `at: `prefix` ...`.
pub(super) fn broad_error(at: &str, entry: &str, width: u8) -> String {
    let (min, family) = if width == 32 {
        (MIN_V4_PREFIX, "IPv4")
    } else {
        (MIN_V6_PREFIX, "IPv6")
    };
    format!(
        "{at}: `{entry}` is broader than /{min}, the shortest {family} prefix a list of call ranges may hold (it would drop nearly every call); refused, --allow-broad accepts it"
    )
}

/// The first entry of a plain CIDR list (one that parses) broader than
/// /8 or /16, as `location:line: ...`.
pub(super) fn check_broad_text(location: &str, text: &str) -> Result<(), String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for (i, raw) in text.lines().enumerate() {
        let entry = raw.split_once('#').map_or(raw, |(e, _)| e).trim();
        let Some((addr, len)) = entry.split_once('/') else {
            continue;
        };
        let width = if addr.contains(':') { 128 } else { 32 };
        if let Ok(len) = len.parse::<u8>()
            && is_broad(width, len)
        {
            return Err(broad_error(&format!("{location}:{}", i + 1), entry, width));
        }
    }
    Ok(())
}

/// Parse a plain CIDR list; errors are `location:line: what`. Prefixes
/// broader than /8 or /16 are refused unless `allow_broad`.
pub(super) fn parse_cidr_text(
    location: &str,
    text: &str,
    normalize: bool,
    allow_broad: bool,
) -> Result<BTreeSet<Cidr>, String> {
    let list = lists::parse_list(location, text, normalize).map_err(|e| e.to_string())?;
    if list.is_empty() {
        return Err(format!(
            "{location}: no entries (an empty list is taken as a broken source)"
        ));
    }
    if !allow_broad {
        check_broad_text(location, text)?;
    }
    Ok(list.cidrs().collect())
}

/// Parse a RIPEstat announced-prefixes response: `data.prefixes[].prefix`.
/// Prefixes broader than /8 or /16 are refused unless `allow_broad`.
pub(super) fn parse_ripestat(
    location: &str,
    asn: u32,
    body: &[u8],
    allow_broad: bool,
) -> Result<BTreeSet<Cidr>, String> {
    let v: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| format!("{location}: not a RIPEstat JSON response: {e}"))?;
    let err = |what: String| format!("{location}: {what}");
    if let Some(status) = v.get("status")
        && status.as_str() != Some("ok")
    {
        let messages = v
            .get("messages")
            .map(ToString::to_string)
            .unwrap_or_default();
        return Err(err(format!("RIPEstat status {status} {messages}")));
    }
    let data = v
        .get("data")
        .and_then(serde_json::Value::as_object)
        .ok_or_else(|| err("no `data` object in the response".into()))?;
    if let Some(resource) = data.get("resource").and_then(serde_json::Value::as_str) {
        let digits = resource
            .strip_prefix("AS")
            .or_else(|| resource.strip_prefix("as"))
            .unwrap_or(resource);
        if digits.parse::<u32>() != Ok(asn) {
            return Err(err(format!(
                "`data.resource` is `{resource}`, expected AS{asn}"
            )));
        }
    }
    let prefixes = data
        .get("prefixes")
        .and_then(serde_json::Value::as_array)
        .ok_or_else(|| err("no `data.prefixes` array in the response".into()))?;
    let mut out = BTreeSet::new();
    for (i, p) in prefixes.iter().enumerate() {
        let s = p
            .get("prefix")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| err(format!("`data.prefixes[{i}]` has no `prefix` string")))?;
        let cidr =
            Cidr::from_str(s).map_err(|e| err(format!("`data.prefixes[{i}].prefix`: {e}")))?;
        if !allow_broad && is_broad(cidr.width(), cidr.prefix_len()) {
            return Err(broad_error(
                &format!("{location}: `data.prefixes[{i}].prefix`"),
                s,
                cidr.width(),
            ));
        }
        out.insert(cidr);
    }
    Ok(out)
}

/// Fetch and parse one source.
pub(super) fn fetch(
    agent: &ureq::Agent,
    ripestat: &str,
    allow_broad: bool,
    src: &Source,
) -> (String, Result<Fetched, String>) {
    let done = |cidrs| {
        Ok(Fetched {
            cidrs,
            fetched: SystemTime::now(),
        })
    };
    match &src.kind {
        SourceKind::Url(url) => {
            let r = http_get(agent, url)
                .and_then(|b| utf8(url, b))
                .and_then(|t| parse_cidr_text(url, &t, src.normalize, allow_broad))
                .and_then(done);
            (url.clone(), r)
        }
        SourceKind::Path(path) => {
            let shown = path.display().to_string();
            let r = fs::read(path)
                .map_err(|e| format!("{shown}: {e}"))
                .and_then(|b| utf8(&shown, b))
                .and_then(|t| parse_cidr_text(&shown, &t, src.normalize, allow_broad))
                .and_then(done);
            (shown, r)
        }
        SourceKind::Ripestat { asn } => {
            let url = ripestat_request(ripestat, *asn);
            let r = http_get(agent, &url)
                .and_then(|b| parse_ripestat(&url, *asn, &b, allow_broad))
                .and_then(done);
            (url, r)
        }
    }
}

/// The HTTP client: `https://` only on every hop (ureq checks each
/// redirect's address before connecting), at most [`MAX_REDIRECTS`]
/// redirects, `timeout` for each fetch with its redirects.
pub(super) fn agent(
    timeout: Duration,
    proxy: Option<ureq::Proxy>,
    roots: Option<&[Vec<u8>]>,
) -> ureq::Agent {
    let mut tls = ureq::tls::TlsConfig::builder();
    if let Some(roots) = roots {
        let certs: Vec<ureq::tls::Certificate<'static>> = roots
            .iter()
            .map(|der| ureq::tls::Certificate::from_der(der).to_owned())
            .collect();
        tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&certs));
    }
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .https_only(true)
        .max_redirects(MAX_REDIRECTS)
        .max_redirects_will_error(true)
        .tls_config(tls.build())
        .proxy(proxy)
        .user_agent(concat!(
            "flowfilter/",
            env!("CARGO_PKG_VERSION"),
            " (list update)"
        ))
        .build()
        .into()
}
