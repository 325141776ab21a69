//! The device description, the two service descriptions (static: nothing in them comes from
//! a torrent) and the device UUID kept in the data dir.

use std::{
    io::{Read, Write},
    path::Path,
};

use actix_web::{
    http::{header, header::HeaderValue, Method, StatusCode},
    web, HttpRequest, HttpResponse,
};
use quick_xml::{
    events::{BytesDecl, BytesText, Event},
    Writer,
};

use super::{cds, soap, xml_response, DlnaOptions, State, DEVICE_TYPE};
use crate::error::text_response;

/// The device UUID, kept in `<data_dir>/dlna-uuid` so TVs know the server across restarts.
pub fn device_uuid(data_dir: &Path) -> std::io::Result<String> {
    let path = data_dir.join("dlna-uuid");
    if let Ok(s) = std::fs::read_to_string(&path) {
        let s = s.trim();
        if valid_uuid(s) {
            return Ok(s.to_owned());
        }
        tracing::warn!("{}: not a UUID, making a new one", path.display());
    }
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    b[6] = (b[6] & 0x0f) | 0x40; // version 4
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
    let h = hex::encode(b);
    let uuid = format!(
        "uuid:{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    );
    std::fs::create_dir_all(data_dir)?;
    let tmp = data_dir.join("dlna-uuid.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    writeln!(f, "{uuid}")?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    Ok(uuid)
}

fn valid_uuid(s: &str) -> bool {
    let Some(u) = s.strip_prefix("uuid:") else {
        return false;
    };
    u.len() == 36
        && u.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit() && !c.is_ascii_uppercase(),
        })
}

fn only_get(req: &HttpRequest) -> Option<HttpResponse> {
    (!matches!(*req.method(), Method::GET | Method::HEAD)).then(|| {
        let mut r = text_response(StatusCode::METHOD_NOT_ALLOWED, "405 method not allowed");
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        r
    })
}

pub(super) async fn scpd_cds(req: HttpRequest) -> HttpResponse {
    only_get(&req).unwrap_or_else(|| {
        xml_response(
            StatusCode::OK,
            include_bytes!("ContentDirectory.xml").to_vec(),
        )
    })
}

pub(super) async fn scpd_cm(req: HttpRequest) -> HttpResponse {
    only_get(&req).unwrap_or_else(|| {
        xml_response(
            StatusCode::OK,
            include_bytes!("ConnectionManager.xml").to_vec(),
        )
    })
}

pub(super) async fn description(req: HttpRequest, opts: web::Data<DlnaOptions>) -> HttpResponse {
    if let Some(r) = only_get(&req) {
        return r;
    }
    xml_response(StatusCode::OK, description_xml(&opts.0))
}

fn description_xml(st: &State) -> Vec<u8> {
    let mut w = Writer::new(Vec::new());
    let text = |w: &mut Writer<Vec<u8>>, name: &str, v: &str| -> std::io::Result<()> {
        w.create_element(name)
            .write_text_content(BytesText::new(&soap::xml_safe(v)))?;
        Ok(())
    };
    let _ = w.write_event(Event::Decl(BytesDecl::new("1.0", Some("utf-8"), None)));
    let _ = w
        .create_element("root")
        .with_attribute(("xmlns", "urn:schemas-upnp-org:device-1-0"))
        .with_attribute(("xmlns:dlna", "urn:schemas-dlna-org:device-1-0"))
        .write_inner_content(|w| {
            w.create_element("specVersion").write_inner_content(|w| {
                text(w, "major", "1")?;
                text(w, "minor", "0")
            })?;
            w.create_element("device").write_inner_content(|w| {
                text(w, "deviceType", DEVICE_TYPE)?;
                text(w, "friendlyName", &st.friendly_name)?;
                text(w, "manufacturer", "confluence")?;
                text(w, "modelName", "confluence")?;
                text(w, "modelDescription", "torrents as a DLNA media server")?;
                text(w, "modelNumber", env!("CARGO_PKG_VERSION"))?;
                text(w, "UDN", &st.uuid)?;
                text(w, "dlna:X_DLNADOC", "DMS-1.50")?;
                w.create_element("serviceList").write_inner_content(|w| {
                    for (ty, id) in [
                        (cds::CDS, "ContentDirectory"),
                        (cds::CM, "ConnectionManager"),
                    ] {
                        w.create_element("service").write_inner_content(|w| {
                            text(w, "serviceType", ty)?;
                            text(w, "serviceId", &format!("urn:upnp-org:serviceId:{id}"))?;
                            text(w, "SCPDURL", &format!("/dlna/{id}.xml"))?;
                            text(w, "controlURL", &format!("/dlna/control/{id}"))?;
                            text(w, "eventSubURL", &format!("/dlna/event/{id}"))
                        })?;
                    }
                    Ok(())
                })?;
                Ok(())
            })?;
            Ok(())
        });
    w.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_is_kept() {
        let dir = std::env::temp_dir().join(format!("dlna-uuid-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let a = device_uuid(&dir).unwrap();
        assert!(valid_uuid(&a), "{a}");
        assert_eq!(device_uuid(&dir).unwrap(), a);
        std::fs::write(dir.join("dlna-uuid"), "garbage").unwrap();
        let b = device_uuid(&dir).unwrap();
        assert!(valid_uuid(&b) && b != a, "{b}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn description_escapes_the_name() {
        let o = DlnaOptions::new("<b>&\"x".into(), "uuid:x".into());
        let d = String::from_utf8(description_xml(&o.0)).unwrap();
        assert!(
            d.contains("<friendlyName>&lt;b&gt;&amp;&quot;x</friendlyName>"),
            "{d}"
        );
    }
}
