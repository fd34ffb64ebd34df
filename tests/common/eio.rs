//! An Engine.IO long-polling client written from the spec (reqwest), for the tests that check
//! the wire itself: the exact status, headers and body of each answer.

use futures_util::StreamExt;
use reqwest::header::HeaderMap;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use super::{start_server, Remote, TestServer, WAIT};

/// A server with the Engine.IO echo (`ECHO=true`, `SOCKETIO=false`); `tweak` adjusts the
/// config further.
pub fn eio_server(tweak: impl FnOnce(&mut wsgate::Config)) -> TestServer {
    start_server(|c| {
        c.echo = true;
        c.socketio = false;
        tweak(c);
    })
}

/// One answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Answer {
    /// The header `name`, or `""`.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// Requests to the Engine.IO endpoint of one server.
pub struct Eio {
    pub http: reqwest::Client,
    pub base: String,
}

impl Eio {
    /// The endpoint at `/socket.io/` of `server`.
    pub fn new(server: &Remote) -> Eio {
        Eio::at(server, "/socket.io/")
    }

    /// The endpoint at `path` of `server`.
    pub fn at(server: &Remote, path: &str) -> Eio {
        Eio {
            http: reqwest::Client::new(),
            base: format!("http://{}{path}", server.addr),
        }
    }

    /// `method` on `?query`, with `body` and `headers`.
    pub async fn request(
        &self,
        method: &str,
        query: &str,
        body: Option<Vec<u8>>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.http.request(method, format!("{}?{query}", self.base));
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        if let Some(body) = body {
            req = req.body(body);
        }
        let res = tokio::time::timeout(WAIT, req.send())
            .await
            .expect("answer in time")
            .unwrap();
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let body = res.text().await.unwrap();
        Answer {
            status,
            headers,
            body,
        }
    }

    /// A GET on `?query`.
    pub async fn get_query(&self, query: &str) -> Answer {
        self.request("GET", query, None, &[]).await
    }

    /// The handshake: a new long-polling session's open packet, parsed, and its sid.
    pub async fn open(&self) -> (String, Value) {
        let answer = self.get_query("EIO=4&transport=polling").await;
        assert_eq!(answer.status, 200, "{answer:?}");
        let json = answer.body.strip_prefix('0').expect("an open packet");
        let open: Value = serde_json::from_str(json).unwrap();
        (open["sid"].as_str().unwrap().to_owned(), open)
    }

    /// A long-poll of session `sid`.
    pub async fn poll(&self, sid: &str) -> Answer {
        self.get_query(&format!("EIO=4&transport=polling&sid={sid}"))
            .await
    }

    /// A POST of `payload` to session `sid`.
    pub async fn post(&self, sid: &str, payload: &[u8]) -> Answer {
        let query = format!("EIO=4&transport=polling&sid={sid}");
        self.request("POST", &query, Some(payload.to_vec()), &[])
            .await
    }
}

/// The JSON error body of Engine.IO error `code`, as the Node server writes it.
pub fn eio_error(code: u8) -> String {
    let message = match code {
        0 => "Transport unknown",
        1 => "Session ID unknown",
        2 => "Bad handshake method",
        3 => "Bad request",
        4 => "Forbidden",
        _ => "Unsupported protocol version",
    };
    format!(r#"{{"code":{code},"message":"{message}"}}"#)
}

/// The next text frame of a WebSocket (pings and pongs skipped); anything else fails.
pub async fn next_text<S>(ws: &mut S) -> String
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await.unwrap() {
            Some(Ok(Message::Text(t))) => return t.to_string(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}
