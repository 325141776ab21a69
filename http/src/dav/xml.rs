//! The XML of PROPFIND: the request body (`allprop`, `propname`, `prop`) read with quick-xml's
//! namespace-aware reader, and the `207 Multi-Status` answer written with its writer (every
//! torrent-controlled string escaped, every href percent-encoded by the caller).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use quick_xml::{
    events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event},
    name::ResolveResult,
    NsReader, Writer,
};

const DAV: &[u8] = b"DAV:";
/// Deeper nesting than any real PROPFIND body is refused (and stops a parser bomb early).
const MAX_DEPTH: usize = 32;
/// More properties than anyone asks for are refused.
const MAX_PROPS: usize = 256;

/// The live properties of every resource, in the order they are written.
pub const LIVE: [&str; 7] = [
    "displayname",
    "resourcetype",
    "getcontentlength",
    "getcontenttype",
    "getetag",
    "getlastmodified",
    "creationdate",
];

/// A property name: its namespace (`None`: no namespace) and local name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PropName {
    pub ns: Option<String>,
    pub local: String,
}

/// What a PROPFIND asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Want {
    AllProp,
    PropName,
    Props(Vec<PropName>),
}

/// The state of [`parse_propfind`] between events.
#[derive(Default)]
struct Parse {
    depth: usize,
    root_seen: bool,
    want: Option<Want>,
    /// Inside `<prop>`: the depth of its children.
    in_prop: Option<usize>,
}

impl Parse {
    /// An element starts (`empty`: and ends at once).
    fn start(&mut self, ns: Option<String>, local: String, empty: bool) -> Result<(), String> {
        let dav = ns.as_deref().map(str::as_bytes) == Some(DAV);
        if self.depth == 0 {
            if self.root_seen {
                return Err("malformed PROPFIND body: more than one root element".into());
            }
            self.root_seen = true;
            if !(dav && local == "propfind") {
                return Err(format!("PROPFIND body is not a DAV:propfind but {local:?}"));
            }
        } else if self.depth == 1 && dav {
            match local.as_str() {
                "allprop" => self.want = Some(Want::AllProp),
                "propname" => self.want = Some(Want::PropName),
                "prop" => {
                    if !matches!(self.want, Some(Want::Props(_))) {
                        self.want = Some(Want::Props(Vec::new()));
                    }
                    if !empty {
                        self.in_prop = Some(self.depth + 1);
                    }
                }
                _ => {} // `include` and extensions: ignored.
            }
        } else if self.in_prop == Some(self.depth) {
            if let Some(Want::Props(v)) = &mut self.want {
                if v.len() >= MAX_PROPS {
                    return Err(format!("PROPFIND asks for over {MAX_PROPS} properties"));
                }
                let p = PropName { ns, local };
                if !v.contains(&p) {
                    v.push(p);
                }
            }
        }
        if !empty {
            self.depth += 1;
            if self.depth > MAX_DEPTH {
                return Err(format!("PROPFIND body nested over {MAX_DEPTH} levels"));
            }
        }
        Ok(())
    }

    fn end(&mut self) {
        self.depth = self.depth.saturating_sub(1);
        if self.in_prop.is_some_and(|d| self.depth < d) {
            self.in_prop = None;
        }
    }
}

/// Parses a PROPFIND body; an empty body means `allprop` (RFC 4918 9.1). Errors are one line.
pub fn parse_propfind(body: &[u8]) -> Result<Want, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Want::AllProp);
    }
    let text = std::str::from_utf8(body).map_err(|_| "PROPFIND body is not UTF-8".to_string())?;
    let mut r = NsReader::from_str(text);
    r.config_mut().check_end_names = true;
    let mut p = Parse::default();
    loop {
        let (ns, ev) = r
            .read_resolved_event()
            .map_err(|e| format!("malformed PROPFIND body: {e}").replace(['\n', '\r'], " "))?;
        let ns = match ns {
            ResolveResult::Bound(n) => Some(String::from_utf8_lossy(n.as_ref()).into_owned()),
            ResolveResult::Unbound => None,
            ResolveResult::Unknown(prefix) => {
                return Err(format!(
                    "malformed PROPFIND body: unknown namespace prefix {:?}",
                    String::from_utf8_lossy(&prefix)
                ))
            }
        };
        match ev {
            Event::Start(e) => p.start(
                ns,
                String::from_utf8_lossy(e.local_name().as_ref()).into(),
                false,
            )?,
            Event::Empty(e) => p.start(
                ns,
                String::from_utf8_lossy(e.local_name().as_ref()).into(),
                true,
            )?,
            Event::End(_) => p.end(),
            Event::Text(t) if p.depth == 0 && !t.iter().all(u8::is_ascii_whitespace) => {
                return Err("malformed PROPFIND body: text outside the root element".into());
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if p.depth != 0 || !p.root_seen {
        return Err("malformed PROPFIND body: unclosed or missing root element".into());
    }
    p.want
        .ok_or_else(|| "PROPFIND body has no allprop, propname or prop".to_string())
}

/// One resource of a multistatus answer.
pub struct Resource {
    /// Already percent-encoded.
    pub href: String,
    pub name: String,
    pub modified: SystemTime,
    /// `None`: a collection.
    pub file: Option<FileProps>,
}

pub struct FileProps {
    pub length: u64,
    pub content_type: String,
    pub etag: String,
}

/// Characters XML 1.0 cannot carry (control characters, U+FFFE, U+FFFF) become U+FFFD.
fn xml_safe(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\t' | '\n' | '\r' => c,
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => '\u{fffd}',
            c => c,
        })
        .collect()
}

/// Seconds since the epoch, clamped to what HTTP dates and RFC 3339 can show (years 1970–9999).
fn clamped_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        .min(253_402_300_799)
}

/// `creationdate` wants RFC 3339.
pub fn rfc3339(t: SystemTime) -> String {
    let secs = clamped_secs(t);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil from days (H. Hinnant's algorithm), for days since 1970-01-01.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// `getlastmodified` wants an HTTP date.
pub fn http_date(t: SystemTime) -> String {
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(clamped_secs(t)))
}

/// The value of live property `name` on `r` (`None`: the resource does not have it).
fn live_value(r: &Resource, name: &str) -> Option<Option<String>> {
    Some(match (name, &r.file) {
        ("displayname", _) => Some(xml_safe(&r.name)),
        ("resourcetype", _) => None, // written specially
        ("getcontentlength", Some(f)) => Some(f.length.to_string()),
        ("getcontenttype", Some(f)) => Some(f.content_type.clone()),
        ("getetag", Some(f)) => Some(f.etag.clone()),
        ("getlastmodified", _) => Some(http_date(r.modified)),
        ("creationdate", _) => Some(rfc3339(r.modified)),
        _ => return None,
    })
}

type W = Writer<Vec<u8>>;

fn write_live(w: &mut W, r: &Resource, name: &str, names_only: bool) -> std::io::Result<()> {
    let tag = format!("D:{name}");
    if names_only {
        w.create_element(tag.as_str()).write_empty()?;
    } else if name == "resourcetype" {
        if r.file.is_none() {
            w.create_element(tag.as_str()).write_inner_content(|w| {
                w.create_element("D:collection").write_empty().map(|_| ())
            })?;
        } else {
            w.create_element(tag.as_str()).write_empty()?;
        }
    } else if let Some(Some(v)) = live_value(r, name) {
        w.create_element(tag.as_str())
            .write_text_content(BytesText::new(&v))?;
    }
    Ok(())
}

/// A property of another namespace, written as an empty element that declares it.
fn write_foreign(w: &mut W, p: &PropName) -> std::io::Result<()> {
    let ns = p.ns.as_deref().unwrap_or("");
    w.create_element(p.local.as_str())
        .with_attribute(("xmlns", ns))
        .write_empty()?;
    Ok(())
}

fn write_propstat<F>(w: &mut W, status: &str, props: F) -> std::io::Result<()>
where
    F: FnOnce(&mut W) -> std::io::Result<()>,
{
    w.create_element("D:propstat").write_inner_content(|w| {
        w.create_element("D:prop").write_inner_content(props)?;
        w.create_element("D:status")
            .write_text_content(BytesText::new(status))?;
        Ok(())
    })?;
    Ok(())
}

fn write_response(w: &mut W, r: &Resource, want: &Want) -> std::io::Result<()> {
    let has = |n: &str| n == "resourcetype" || matches!(live_value(r, n), Some(Some(_)));
    w.create_element("D:response").write_inner_content(|w| {
        w.create_element("D:href")
            .write_text_content(BytesText::new(&r.href))?;
        match want {
            Want::AllProp | Want::PropName => {
                let names_only = matches!(want, Want::PropName);
                write_propstat(w, "HTTP/1.1 200 OK", |w| {
                    for n in LIVE.iter().filter(|n| has(n)) {
                        write_live(w, r, n, names_only)?;
                    }
                    Ok(())
                })?;
            }
            Want::Props(props) => {
                let is_live = |p: &PropName| p.ns.as_deref() == Some("DAV:") && has(&p.local);
                let (found, missing): (Vec<&PropName>, Vec<&PropName>) =
                    props.iter().partition(|p| is_live(p));
                if !found.is_empty() {
                    write_propstat(w, "HTTP/1.1 200 OK", |w| {
                        found
                            .iter()
                            .try_for_each(|p| write_live(w, r, &p.local, false))
                    })?;
                }
                if !missing.is_empty() {
                    write_propstat(w, "HTTP/1.1 404 Not Found", |w| {
                        missing.iter().try_for_each(|p| write_foreign(w, p))
                    })?;
                }
            }
        }
        Ok(())
    })?;
    Ok(())
}

/// How many `<D:response>`s go into one chunk of a streamed answer.
const BATCH: usize = 256;

/// The body of a `207 Multi-Status` answer in chunks, the resources made as it is sent: a
/// directory of a torrent with 100 000 files never sits in memory as one XML document.
pub struct Multistatus {
    resources: Box<dyn Iterator<Item = Resource> + Send>,
    want: Want,
    /// 0: the head is next; 1: resources; 2: the foot is next; 3: done.
    stage: u8,
}

impl Multistatus {
    pub fn new(resources: Box<dyn Iterator<Item = Resource> + Send>, want: Want) -> Self {
        Self {
            resources,
            want,
            stage: 0,
        }
    }

    /// The whole body at once.
    pub fn into_bytes(self) -> Vec<u8> {
        self.flat_map(|b| b.to_vec()).collect()
    }

    /// Whether the whole answer fits one batch (then it is sent with a `Content-Length`).
    pub fn is_small(&self) -> bool {
        self.resources.size_hint().1.is_some_and(|n| n <= BATCH)
    }
}

impl Iterator for Multistatus {
    type Item = bytes::Bytes;

    fn next(&mut self) -> Option<bytes::Bytes> {
        let mut w = Writer::new(Vec::new());
        // Writing into a Vec cannot fail.
        let _ = match self.stage {
            0 => {
                self.stage = 1;
                w.write_event(Event::Decl(BytesDecl::new("1.0", Some("utf-8"), None)))
                    .and_then(|_| {
                        let start =
                            BytesStart::new("D:multistatus").with_attributes([("xmlns:D", "DAV:")]);
                        w.write_event(Event::Start(start))
                    })
            }
            1 => {
                let mut n = 0;
                for r in self.resources.by_ref().take(BATCH) {
                    let _ = write_response(&mut w, &r, &self.want);
                    n += 1;
                }
                if n < BATCH {
                    self.stage = 2;
                }
                if n == 0 {
                    return self.next();
                }
                Ok(())
            }
            2 => {
                self.stage = 3;
                w.write_event(Event::End(BytesEnd::new("D:multistatus")))
            }
            _ => return None,
        };
        Some(w.into_inner().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(local: &str) -> PropName {
        PropName {
            ns: Some("DAV:".into()),
            local: local.into(),
        }
    }

    #[test]
    fn parses_bodies() {
        assert_eq!(parse_propfind(b""), Ok(Want::AllProp));
        assert_eq!(parse_propfind(b" \r\n"), Ok(Want::AllProp));
        let all = br#"<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:allprop/></D:propfind>"#;
        assert_eq!(parse_propfind(all), Ok(Want::AllProp));
        let names = br#"<propfind xmlns="DAV:"><propname/></propfind>"#;
        assert_eq!(parse_propfind(names), Ok(Want::PropName));
        let props = br#"<a:propfind xmlns:a="DAV:" xmlns:x="urn:x"><a:prop>
            <a:getcontentlength/><x:foo/><bar xmlns=""/><a:getetag></a:getetag></a:prop></a:propfind>"#;
        assert_eq!(
            parse_propfind(props),
            Ok(Want::Props(vec![
                p("getcontentlength"),
                PropName {
                    ns: Some("urn:x".into()),
                    local: "foo".into()
                },
                PropName {
                    ns: None,
                    local: "bar".into()
                },
                p("getetag"),
            ]))
        );
    }

    #[test]
    fn refuses_bad_bodies() {
        for bad in [
            &b"not xml"[..],
            b"<propfind xmlns=\"DAV:\"><prop>",
            b"<propfind xmlns=\"DAV:\"><prop></propfind>",
            b"<x:propfind xmlns:x=\"urn:other\"><x:allprop/></x:propfind>",
            b"<D:propfind xmlns:D=\"DAV:\"></D:propfind>",
            b"<D:propfind xmlns:D=\"DAV:\"><D:allprop/></D:propfind><D:propfind xmlns:D=\"DAV:\"/>",
            b"<q:propfind><q:allprop/></q:propfind>",
            b"\xff\xfe<",
        ] {
            let e = parse_propfind(bad).unwrap_err();
            assert!(!e.contains('\n'), "{e}");
        }
        let deep = format!(
            "<propfind xmlns=\"DAV:\"><prop>{}{}</prop></propfind>",
            "<a>".repeat(100),
            "</a>".repeat(100)
        );
        assert!(parse_propfind(deep.as_bytes()).is_err());
    }

    #[test]
    fn dates() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(rfc3339(t), "2023-11-14T22:13:20Z");
        assert_eq!(http_date(t), "Tue, 14 Nov 2023 22:13:20 GMT");
        let far = UNIX_EPOCH + Duration::from_secs(u64::MAX / 4);
        assert_eq!(rfc3339(far), "9999-12-31T23:59:59Z");
        assert_eq!(http_date(far), "Fri, 31 Dec 9999 23:59:59 GMT");
    }

    #[test]
    fn escapes_names() {
        let r = Resource {
            href: "/dav/x/%3Ca%3E".into(),
            name: "<a>&\"\u{1}".into(),
            modified: UNIX_EPOCH,
            file: Some(FileProps {
                length: 3,
                content_type: "text/plain".into(),
                etag: "\"e\"".into(),
            }),
        };
        let out = Multistatus::new(Box::new(vec![r].into_iter()), Want::AllProp).into_bytes();
        let out = String::from_utf8(out).unwrap();
        assert!(
            out.contains("<D:displayname>&lt;a&gt;&amp;&quot;\u{fffd}</D:displayname>"),
            "{out}"
        );
        assert!(out.contains("<D:getcontentlength>3</D:getcontentlength>"));
        assert!(out.contains("<D:resourcetype/>"));
    }

    #[test]
    fn streams_big_listings_in_batches() {
        let r = |i: usize| Resource {
            href: format!("/dav/x/{i}"),
            name: i.to_string(),
            modified: UNIX_EPOCH,
            file: None,
        };
        let small = Multistatus::new(Box::new((0..BATCH).map(r)), Want::AllProp);
        assert!(small.is_small());
        let big = Multistatus::new(Box::new((0..BATCH * 2 + 1).map(r)), Want::PropName);
        assert!(!big.is_small());
        let chunks: Vec<_> = big.collect();
        // head, three batches, foot
        assert_eq!(chunks.len(), 5);
        let text = String::from_utf8(chunks.concat()).unwrap();
        assert_eq!(text.matches("<D:response>").count(), BATCH * 2 + 1);
        assert!(text.starts_with(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?><D:multistatus xmlns:D=\"DAV:\">"
        ));
        assert!(text.ends_with("</D:response></D:multistatus>"));
        // Exactly one batch: no empty chunk.
        let exact = Multistatus::new(Box::new((0..BATCH).map(r)), Want::AllProp);
        assert_eq!(exact.count(), 3);
    }
}
