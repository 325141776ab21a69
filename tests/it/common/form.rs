//! `multipart/form-data` bodies for `/upload`, built the way clients send them: a browser's
//! form (`filename="…"` as typed) or a client that percent-encodes names (`filename*=`, for
//! names with quotes or control characters a plain `filename` cannot carry).

use super::qenc;

/// A form under construction; [`Form::finish`] gives its `Content-Type` and body.
pub struct Form {
    boundary: String,
    body: Vec<u8>,
}

impl Form {
    /// An empty form whose parts are separated by `boundary`.
    pub fn new(boundary: &str) -> Form {
        Form {
            boundary: boundary.to_string(),
            body: Vec::new(),
        }
    }

    /// A text field (`name`, `strip-top-directory`, …).
    pub fn field(mut self, name: &str, value: &str) -> Form {
        let b = &self.boundary;
        self.body.extend_from_slice(
            format!("--{b}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
                .as_bytes(),
        );
        self
    }

    /// A `files` part named `filename="<path>"`, the path as it is (what a browser sends).
    pub fn file(self, path: &str, data: &[u8]) -> Form {
        self.part(&format!("filename=\"{path}\""), data)
    }

    /// A `files` part whose path is percent-encoded in `filename*=UTF-8''…` (the plain
    /// `filename` is a placeholder the daemon must ignore).
    pub fn file_utf8(self, path: &str, data: &[u8]) -> Form {
        self.part(
            &format!("filename=\"f\"; filename*=UTF-8''{}", qenc(path)),
            data,
        )
    }

    /// Every `(path, bytes)` as a [`Form::file`] part, in order.
    pub fn files(self, files: &[(&str, &[u8])]) -> Form {
        files.iter().fold(self, |f, (p, d)| f.file(p, d))
    }

    fn part(mut self, filename: &str, data: &[u8]) -> Form {
        let b = &self.boundary;
        self.body.extend_from_slice(
            format!(
                "--{b}\r\nContent-Disposition: form-data; name=\"files\"; {filename}\r\n\
                 Content-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        self.body.extend_from_slice(data);
        self.body.extend_from_slice(b"\r\n");
        self
    }

    /// The `Content-Type` header value and the body with its closing boundary.
    pub fn finish(mut self) -> (String, Vec<u8>) {
        let b = &self.boundary;
        self.body
            .extend_from_slice(format!("--{b}--\r\n").as_bytes());
        (format!("multipart/form-data; boundary={b}"), self.body)
    }
}

/// The usual `/upload` form: a torrent `name` and its files (browser-style names).
pub fn upload_form(name: &str, files: &[(&str, &[u8])]) -> (String, Vec<u8>) {
    Form::new("confluence-test-boundary-7f3a9c")
        .field("name", name)
        .files(files)
        .finish()
}
