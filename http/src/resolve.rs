//! The steps every torrent route starts with, in one place: read which torrent the request
//! names, take a reference on it (`-maxPendingTorrents` → 429), and wait for its metadata while
//! watching the client's connection (a client that leaves ends the wait and drops the
//! reference). Handlers then only do their own part.
//!
//! [`Resolved`] is the actix extractor for the routes that name the torrent in the query
//! (`ih=` or `magnet=`, Go's rules); [`ResolvedNowait`] the same for the routes where
//! `nowait=1` answers `202 info not ready` instead of waiting (as the original's `/info` and
//! `/metainfo`). Routes that name it elsewhere (the path form of `/data`, listings, WebDAV) build
//! a [`Named`] themselves and call [`Resolved::new`]; WebDAV's PROPFIND, which answers some
//! requests without the metadata, uses the two halves, [`acquire`] and [`wait_info`].

use std::sync::Arc;

use actix_web::{dev::Payload, http::StatusCode, web, FromRequest, HttpRequest};
use confluence_core::{
    ident::{self, InfoHash},
    metainfo::Info,
    Engine, TorrentRef,
};
use futures::future::LocalBoxFuture;

use crate::{conn::ConnFd, error::HttpError, query::Query};

/// The torrent a request names.
pub(crate) struct Named {
    pub ih: InfoHash,
    /// A magnet's trackers (none for a bare infohash).
    pub trackers: Vec<String>,
}

impl Named {
    /// `magnet=` (which wins) or `ih=`; a bad or missing one is a 400 with the original's words.
    pub fn from_query(q: &Query) -> Result<Named, HttpError> {
        let (ih, trackers) = ident::resolve(q.get("magnet").as_deref(), q.get("ih").as_deref())
            .map_err(|e| HttpError::bad_request(e.http_message()))?;
        Ok(Named { ih, trackers })
    }

    /// An infohash from a path: no trackers.
    pub fn bare(ih: InfoHash) -> Named {
        Named {
            ih,
            trackers: Vec::new(),
        }
    }
}

/// Whether `nowait=1` in the query makes a torrent without metadata a `202 info not ready`.
/// Only some routes honour it (the original's `/data`, `/events` and `/fileState` always wait).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Nowait {
    Honour,
    Ignore,
}

/// A torrent a request named, referenced for as long as this lives, with its metadata.
pub(crate) struct Resolved {
    pub torrent: TorrentRef,
    pub info: Arc<Info>,
    /// The request's query, decoded once (handlers read `path=`, `filename=`, … from it).
    pub query: Query,
}

impl Resolved {
    /// Acquires the torrent `named` and waits for its metadata (see the module doc).
    pub async fn new(req: &HttpRequest, named: Named, nowait: Nowait) -> Result<Self, HttpError> {
        let query = Query::parse(req.query_string());
        let torrent = acquire(engine(req)?, &named)?;
        if nowait == Nowait::Honour && query.flag("nowait") && torrent.info().is_none() {
            return Err(HttpError::new(StatusCode::ACCEPTED, "info not ready"));
        }
        let info = wait_info(req, &torrent).await?;
        Ok(Resolved {
            torrent,
            info,
            query,
        })
    }

    /// Names the torrent by the query, then [`Resolved::new`].
    async fn from_query(req: HttpRequest, nowait: Nowait) -> Result<Self, HttpError> {
        let named = Named::from_query(&Query::parse(req.query_string()))?;
        Self::new(&req, named, nowait).await
    }
}

/// The engine the app carries (a missing one is a setup error of an embedder: 500, no panic).
fn engine(req: &HttpRequest) -> Result<&web::Data<Engine>, HttpError> {
    req.app_data::<web::Data<Engine>>().ok_or_else(|| {
        HttpError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server setup error: the app carries no engine",
        )
    })
}

/// A reference on the torrent `named` (adding it if it is new); 429 at `-maxPendingTorrents`.
pub(crate) fn acquire(engine: &Engine, named: &Named) -> Result<TorrentRef, HttpError> {
    Ok(engine.acquire(named.ih, &named.trackers)?)
}

/// The torrent's metadata once known; [`HttpError::client_gone`] if the client leaves first.
pub(crate) async fn wait_info(req: &HttpRequest, t: &TorrentRef) -> Result<Arc<Info>, HttpError> {
    tokio::select! {
        info = t.wait_info() => Ok(info),
        _ = ConnFd::closed(ConnFd::of(req)) => Err(HttpError::client_gone()),
    }
}

impl FromRequest for Resolved {
    type Error = HttpError;
    type Future = LocalBoxFuture<'static, Result<Self, HttpError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        Box::pin(Self::from_query(req.clone(), Nowait::Ignore))
    }
}

/// [`Resolved`] for the routes that honour `nowait=1`.
pub(crate) struct ResolvedNowait(pub Resolved);

impl FromRequest for ResolvedNowait {
    type Error = HttpError;
    type Future = LocalBoxFuture<'static, Result<Self, HttpError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            Resolved::from_query(req, Nowait::Honour)
                .await
                .map(ResolvedNowait)
        })
    }
}
