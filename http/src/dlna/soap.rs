//! SOAP 1.1 as UPnP control uses it: an action request read with quick-xml (bounded depth and
//! argument count, entities resolved, no DTD), and responses and faults written with its writer.

use std::borrow::Cow;

use quick_xml::{
    escape::resolve_predefined_entity,
    events::{BytesDecl, BytesText, Event},
    name::ResolveResult,
    NsReader, Writer,
};

const SOAP_ENV: &str = "http://schemas.xmlsoap.org/soap/envelope/";
const SOAP_ENCODING: &str = "http://schemas.xmlsoap.org/soap/encoding/";

/// Deepest element nesting accepted in a request (Envelope/Body/Action/Argument is 4; a
/// `Header` may hold a little more).
const MAX_DEPTH: usize = 8;
/// Most arguments accepted in one action (Browse has 6).
const MAX_ARGS: usize = 32;

/// UPnP error codes (UDA 1.0 §3.2.2, ContentDirectory:1 §2.5.4, ConnectionManager:1).
pub(crate) const INVALID_ACTION: u16 = 401;
pub(crate) const INVALID_ARGS: u16 = 402;
pub(crate) const NO_SUCH_OBJECT: u16 = 701;
pub(crate) const INVALID_CONNECTION: u16 = 706;
pub(crate) const NO_SUCH_CONTAINER: u16 = 710;

/// A UPnP error, sent as a SOAP fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fault {
    pub code: u16,
    pub description: String,
}

impl Fault {
    pub fn new(code: u16, description: impl Into<String>) -> Fault {
        Fault {
            code,
            description: description.into(),
        }
    }

    pub fn invalid_args(why: impl std::fmt::Display) -> Fault {
        Fault::new(INVALID_ARGS, format!("Invalid Args: {why}"))
    }
}

/// A parsed action request.
#[derive(Debug, Default)]
pub(crate) struct Action {
    /// The action element's namespace: the service type.
    pub service: String,
    pub name: String,
    pub args: Vec<(String, String)>,
}

impl Action {
    pub fn arg(&self, name: &str) -> Option<&str> {
        self.args
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn malformed(e: impl std::fmt::Display) -> Fault {
    Fault::invalid_args(format!("malformed SOAP request: {e}"))
}

fn local(name: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(name)
}

/// Reads `Envelope/Body/<action>/<argument>*`.
pub(crate) fn parse(body: &[u8]) -> Result<Action, Fault> {
    let mut reader = NsReader::from_reader(body);
    reader.config_mut().check_end_names = true;
    let mut buf = Vec::new();
    // Local names of the open elements.
    let mut stack: Vec<String> = Vec::new();
    let mut action: Option<Action> = None;
    let mut text = String::new();
    loop {
        buf.clear();
        let (ns, ev) = reader
            .read_resolved_event_into(&mut buf)
            .map_err(malformed)?;
        let ns = match ns {
            ResolveResult::Bound(n) => String::from_utf8_lossy(n.as_ref()).into_owned(),
            _ => String::new(),
        };
        match ev {
            Event::Start(e) | Event::Empty(e) if stack.len() >= MAX_DEPTH => {
                return Err(malformed(format!(
                    "elements nested deeper than {MAX_DEPTH} (at <{}>)",
                    local(e.local_name().as_ref())
                )))
            }
            Event::Start(ref e) | Event::Empty(ref e) => {
                let name = local(e.local_name().as_ref()).into_owned();
                let empty = matches!(ev, Event::Empty(_));
                open(&mut stack, &mut action, &ns, &name)?;
                text.clear();
                if empty {
                    close(&mut stack, &mut action, &mut text)?;
                }
            }
            Event::End(_) => close(&mut stack, &mut action, &mut text)?,
            Event::Text(t) => text.push_str(&t.xml10_content().map_err(malformed)?),
            Event::CData(t) => text.push_str(&t.decode().map_err(malformed)?),
            Event::GeneralRef(r) => {
                if let Some(c) = r.resolve_char_ref().map_err(malformed)? {
                    text.push(c);
                } else {
                    let name = r.decode().map_err(malformed)?;
                    let v = resolve_predefined_entity(&name)
                        .ok_or_else(|| malformed(format!("unknown entity &{name};")))?;
                    text.push_str(v);
                }
            }
            Event::DocType(_) => return Err(malformed("a DTD is not allowed")),
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(malformed("unexpected end of document"));
    }
    action.ok_or_else(|| malformed("no action in the SOAP Body"))
}

fn open(
    stack: &mut Vec<String>,
    action: &mut Option<Action>,
    ns: &str,
    name: &str,
) -> Result<(), Fault> {
    let ok = match stack.len() {
        0 => name == "Envelope" && (ns == SOAP_ENV || ns.is_empty()),
        1 => name == "Body" || name == "Header",
        2 if stack[1] == "Body" => {
            if action.is_some() {
                return Err(malformed("more than one action in the SOAP Body"));
            }
            *action = Some(Action {
                service: ns.to_owned(),
                name: name.to_owned(),
                args: Vec::new(),
            });
            true
        }
        3 if stack[1] == "Body" => {
            let a = action.as_ref().map_or(0, |a| a.args.len());
            if a >= MAX_ARGS {
                return Err(malformed(format!("more than {MAX_ARGS} arguments")));
            }
            true
        }
        4.. if stack[1] == "Body" => {
            return Err(malformed(format!(
                "unexpected element <{name}> in an argument"
            )))
        }
        _ => true,
    };
    if !ok {
        return Err(malformed(format!("unexpected element <{name}>")));
    }
    stack.push(name.to_owned());
    Ok(())
}

fn close(
    stack: &mut Vec<String>,
    action: &mut Option<Action>,
    text: &mut String,
) -> Result<(), Fault> {
    let name = stack.pop().ok_or_else(|| malformed("unbalanced end tag"))?;
    if stack.len() == 3 && stack[1] == "Body" {
        if let Some(a) = action.as_mut() {
            a.args.push((name, std::mem::take(text)));
        }
    }
    text.clear();
    Ok(())
}

/// Replaces what XML 1.0 cannot carry even escaped (control characters other than tab, CR and
/// LF; U+FFFE, U+FFFF) with U+FFFD: torrent names may hold anything.
pub(crate) fn xml_safe(s: &str) -> Cow<'_, str> {
    let bad = |c: char| {
        (c < ' ' && !matches!(c, '\t' | '\n' | '\r')) || matches!(c, '\u{FFFE}' | '\u{FFFF}')
    };
    if s.chars().any(bad) {
        Cow::Owned(
            s.chars()
                .map(|c| if bad(c) { '\u{FFFD}' } else { c })
                .collect(),
        )
    } else {
        Cow::Borrowed(s)
    }
}

/// `<s:Envelope><s:Body>` around what `body` writes.
fn envelope<F>(body: F) -> Vec<u8>
where
    F: FnOnce(&mut Writer<Vec<u8>>) -> std::io::Result<()>,
{
    let mut w = Writer::new(Vec::new());
    // Writing to a Vec cannot fail.
    let _ = w.write_event(Event::Decl(BytesDecl::new("1.0", Some("utf-8"), None)));
    let _ = w
        .create_element("s:Envelope")
        .with_attribute(("xmlns:s", SOAP_ENV))
        .with_attribute(("s:encodingStyle", SOAP_ENCODING))
        .write_inner_content(|w| {
            w.create_element("s:Body").write_inner_content(body)?;
            Ok(())
        });
    w.into_inner()
}

/// `<u:<action>Response xmlns:u="<service>">` with the out arguments, each escaped.
pub(crate) fn response(service: &str, action: &str, args: &[(&str, String)]) -> Vec<u8> {
    envelope(|w| {
        w.create_element(format!("u:{action}Response"))
            .with_attribute(("xmlns:u", service))
            .write_inner_content(|w| {
                for (k, v) in args {
                    w.create_element(*k)
                        .write_text_content(BytesText::new(&xml_safe(v)))?;
                }
                Ok(())
            })?;
        Ok(())
    })
}

/// A `UPnPError` fault (sent with status 500, as UDA says).
pub(crate) fn fault(f: &Fault) -> Vec<u8> {
    envelope(|w| {
        w.create_element("s:Fault").write_inner_content(|w| {
            w.create_element("faultcode")
                .write_text_content(BytesText::new("s:Client"))?;
            w.create_element("faultstring")
                .write_text_content(BytesText::new("UPnPError"))?;
            w.create_element("detail").write_inner_content(|w| {
                w.create_element("UPnPError")
                    .with_attribute(("xmlns", "urn:schemas-upnp-org:control-1-0"))
                    .write_inner_content(|w| {
                        w.create_element("errorCode")
                            .write_text_content(BytesText::new(&f.code.to_string()))?;
                        w.create_element("errorDescription")
                            .write_text_content(BytesText::new(&xml_safe(&f.description)))?;
                        Ok(())
                    })?;
                Ok(())
            })?;
            Ok(())
        })?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CDS: &str = "urn:schemas-upnp-org:service:ContentDirectory:1";

    fn browse(args: &str) -> String {
        format!(
            r#"<?xml version="1.0"?><s:Envelope xmlns:s="{SOAP_ENV}"><s:Body><u:Browse xmlns:u="{CDS}">{args}</u:Browse></s:Body></s:Envelope>"#
        )
    }

    #[test]
    fn parses_an_action() {
        let a = parse(
            browse(
                "<ObjectID>0</ObjectID><Filter>&lt;b&gt;&amp;&#34;x&#x41;</Filter><SortCriteria/>",
            )
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(a.service, CDS);
        assert_eq!(a.name, "Browse");
        assert_eq!(a.arg("ObjectID"), Some("0"));
        assert_eq!(a.arg("Filter"), Some("<b>&\"xA"));
        assert_eq!(a.arg("SortCriteria"), Some(""));
    }

    #[test]
    fn rejects_malformed() {
        let deep = format!("{}{}", "<a>".repeat(100_000), "</a>".repeat(100_000));
        let many = "<x>1</x>".repeat(1000);
        for bad in [
            String::new(),
            "not xml".to_owned(),
            "<Envelope>".to_owned(),
            "<Other/>".to_owned(),
            browse("<ObjectID>0</Wrong>"),
            browse("<ObjectID>&foo;</ObjectID>"),
            browse("<ObjectID>&#0;</ObjectID>"),
            browse(&deep),
            browse(&many),
            browse("<ObjectID><x/></ObjectID>"),
            format!("<!DOCTYPE x [<!ENTITY a 'b'>]>{}", browse("")),
            format!(r#"<s:Envelope xmlns:s="{SOAP_ENV}"><s:Body/></s:Envelope>"#),
            format!(r#"<s:Envelope xmlns:s="{SOAP_ENV}"><s:Body><a/><b/></s:Body></s:Envelope>"#),
        ] {
            let e = parse(bad.as_bytes()).unwrap_err();
            assert_eq!(e.code, INVALID_ARGS, "{bad:.80}");
            assert!(!e.description.contains('\n'), "{}", e.description);
        }
    }

    #[test]
    fn writes_escaped_responses_and_faults() {
        let r = response(CDS, "Browse", &[("Result", "<b>&\"x\u{1}".to_owned())]);
        let r = String::from_utf8(r).unwrap();
        assert!(
            r.contains("<Result>&lt;b&gt;&amp;&quot;x\u{FFFD}</Result>"),
            "{r}"
        );
        let f = String::from_utf8(fault(&Fault::new(701, "No such object"))).unwrap();
        assert!(f.contains("<errorCode>701</errorCode>"), "{f}");
        assert!(f.contains("<faultcode>s:Client</faultcode>"), "{f}");
    }
}
