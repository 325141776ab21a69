//! Response bodies: byte ranges of a reader's selection (and literal parts between them)
//! streamed to a front door chunk by chunk, each as soon as its piece is verified.

use std::io;

use bytes::Bytes;

use crate::{backend::io_error, chunk::CHUNK, engine::Engine, reader::Reader};

/// One piece of a response body: literal bytes (e.g. a multipart header) or a range of the
/// reader's selection.
#[derive(Clone, Debug)]
pub enum BodyPart {
    Literal(Bytes),
    Range { start: u64, len: u64 },
}

impl Engine {
    /// Streams `parts` through `reader` on the engine's runtime. Chunks arrive as soon as each
    /// piece is verified. Dropping the receiver, or `cancel` resolving (a client that went
    /// away), ends any wait at once and drops the reader, releasing its torrent reference.
    pub fn stream_body(
        &self,
        mut reader: Reader,
        parts: Vec<BodyPart>,
        cancel: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> tokio::sync::mpsc::Receiver<io::Result<Bytes>> {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        self.inner.swarm.rt.spawn(async move {
            tokio::pin!(cancel);
            for part in parts {
                match part {
                    BodyPart::Literal(b) => {
                        if tx.send(Ok(b)).await.is_err() {
                            return;
                        }
                    }
                    BodyPart::Range { start, len } => {
                        let end = start.saturating_add(len);
                        let mut pos = start;
                        while pos < end {
                            let max = (end - pos).min(CHUNK as u64) as usize;
                            let chunk = tokio::select! {
                                r = reader.read(pos, max) => r,
                                _ = tx.closed() => return,
                                _ = &mut cancel => return,
                            };
                            let chunk = match chunk {
                                Ok(c) if c.is_empty() => {
                                    Err(io_error(anyhow::anyhow!("unexpected end of data")))
                                }
                                other => other,
                            };
                            let failed = chunk.is_err();
                            if let Ok(c) = &chunk {
                                pos += c.len() as u64;
                            }
                            if tx.send(chunk).await.is_err() || failed {
                                return;
                            }
                        }
                    }
                }
            }
        });
        rx
    }
}
