//! Reading REST requests: the body within its size limit, the content type, and a field reader
//! that validates an object field by field and reports every invalid field at once.

use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use wsgate_protocol::{ErrorCode, Format, RawData, MAX_NAME_LEN};

use super::ApiError;
use crate::config::Config;
use crate::http::HttpCode;

/// Longest idempotency key (the `Idempotency-Key` header, a batch item's `idempotencyKey`).
pub(crate) const MAX_KEY_LEN: usize = 64;

/// What an idempotency key must be, as a 400 says it.
pub(crate) const KEY_RULE: &str = "must be 1 to 64 visible ASCII characters";

/// Whether `key` is a valid idempotency key: 1 to [`MAX_KEY_LEN`] bytes of visible ASCII.
pub(crate) fn is_key(key: &str) -> bool {
    (1..=MAX_KEY_LEN).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic())
}

/// One invalid field, for the `details` of a 400.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Detail {
    pub(crate) field: String,
    pub(crate) message: String,
}

impl Detail {
    pub(crate) fn new(field: impl Into<String>, message: impl Into<String>) -> Detail {
        Detail {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Reads a JSON body: `application/json`, at most `MAX_BODY_BYTES`, within `BODY_TIMEOUT`.
pub(crate) async fn read_json(req: Request<Incoming>, cfg: &Config) -> Result<Bytes, ApiError> {
    let max = cfg.max_body_bytes;
    let content_type = req
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = content_type.split(';').next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::invalid(vec![Detail::new(
            "content-type",
            "must be application/json",
        )]));
    }
    let declared = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large(max));
    }
    let collect = Limited::new(req.into_body(), max).collect();
    let Ok(collected) = tokio::time::timeout(cfg.body_timeout, collect).await else {
        return Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            HttpCode::BodyTimeout,
            format!(
                "the request body did not arrive within {} ms",
                cfg.body_timeout.as_millis()
            ),
        ));
    };
    match collected {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large(max)),
        Err(_) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
            "the request body could not be read",
        )),
    }
}

fn too_large(max: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        HttpCode::BodyTooLarge,
        format!("the request body is larger than {max} bytes"),
    )
}

/// The members of one JSON object, raw, in order (duplicates kept so they can be refused).
struct RawObject<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> serde::Deserialize<'de> for RawObject<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawObject<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut members = Vec::new();
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    members.push((key, map.next_value::<&'de RawValue>()?));
                }
                Ok(RawObject(members))
            }
        }
        d.deserialize_map(V)
    }
}

/// Reads the fields of one object, collecting every problem as a [`Detail`].
pub(crate) struct Fields<'a> {
    prefix: String,
    members: Vec<(Cow<'a, str>, &'a RawValue)>,
    used: Vec<bool>,
    pub(crate) errors: Vec<Detail>,
}

impl<'a> Fields<'a> {
    /// Parses a whole body as one object.
    pub(crate) fn parse(body: &'a [u8]) -> Result<Fields<'a>, ApiError> {
        match serde_json::from_slice::<RawObject<'a>>(body) {
            Ok(obj) => Ok(Fields::from_members("", obj.0)),
            Err(e) => Err(ApiError::invalid(vec![Detail::new(
                "body",
                format!("malformed JSON: {e}"),
            )])),
        }
    }

    /// Reads a nested object (e.g. an item of a batch); `None` after recording an error.
    pub(crate) fn nested(
        raw: &'a RawValue,
        field: String,
        errors: &mut Vec<Detail>,
    ) -> Option<Fields<'a>> {
        match serde_json::from_str::<RawObject<'a>>(raw.get()) {
            Ok(obj) => Some(Fields::from_members(&format!("{field}."), obj.0)),
            Err(_) => {
                errors.push(Detail::new(field, "expected an object"));
                None
            }
        }
    }

    fn from_members(prefix: &str, members: Vec<(Cow<'a, str>, &'a RawValue)>) -> Fields<'a> {
        let mut errors = Vec::new();
        for (i, (k, _)) in members.iter().enumerate() {
            if members[..i].iter().any(|(p, _)| p == k) {
                errors.push(Detail::new(format!("{prefix}{k}"), "duplicate field"));
            }
        }
        let used = vec![false; members.len()];
        Fields {
            prefix: prefix.to_owned(),
            members,
            used,
            errors,
        }
    }

    /// `field` with this object's prefix (e.g. `pushes[3].event`).
    pub(crate) fn prefixed(&self, field: &str) -> String {
        format!("{}{field}", self.prefix)
    }

    /// Whether the object has `field`.
    pub(crate) fn has(&self, field: &str) -> bool {
        self.members.iter().any(|(k, _)| k == field)
    }

    fn take(&mut self, field: &str) -> Option<&'a RawValue> {
        let i = self.members.iter().position(|(k, _)| k == field)?;
        self.used[i] = true;
        Some(self.members[i].1)
    }

    fn fail(&mut self, field: &str, message: &str) {
        let name = self.prefixed(field);
        self.errors.push(Detail::new(name, message));
    }

    /// A name: a string of 1 to 128 bytes.
    pub(crate) fn name_field(&mut self, field: &str, required: bool) -> Option<String> {
        let Some(raw) = self.take(field) else {
            if required {
                self.fail(field, "required");
            }
            return None;
        };
        match serde_json::from_str::<String>(raw.get()) {
            Ok(s) if s.is_empty() => self.fail(field, "must not be empty"),
            Ok(s) if s.len() > MAX_NAME_LEN => self.fail(field, "longer than 128 bytes"),
            Ok(s) => return Some(s),
            Err(_) => self.fail(field, "expected a string"),
        }
        None
    }

    /// A list of 1 to `max` names.
    pub(crate) fn name_list(&mut self, field: &str, max: usize) -> Option<Vec<String>> {
        let raw = self.take(field)?;
        let Ok(items) = serde_json::from_str::<Vec<&RawValue>>(raw.get()) else {
            self.fail(field, "expected an array of strings");
            return None;
        };
        if items.is_empty() || items.len() > max {
            self.fail(field, &format!("must hold 1 to {max} items"));
            return None;
        }
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            match serde_json::from_str::<String>(item.get()) {
                Ok(s) if !s.is_empty() && s.len() <= MAX_NAME_LEN => out.push(s),
                _ => self.fail(
                    &format!("{field}[{i}]"),
                    "expected a string of 1 to 128 bytes",
                ),
            }
        }
        (out.len() == items.len()).then_some(out)
    }

    /// A list of raw values (e.g. batch items), 1 to `max`.
    pub(crate) fn raw_list(&mut self, field: &str, max: usize) -> Option<Vec<&'a RawValue>> {
        let Some(raw) = self.take(field) else {
            self.fail(field, "required");
            return None;
        };
        match serde_json::from_str::<Vec<&'a RawValue>>(raw.get()) {
            Ok(items) if !items.is_empty() && items.len() <= max => Some(items),
            Ok(_) => {
                self.fail(field, &format!("must hold 1 to {max} items"));
                None
            }
            Err(_) => {
                self.fail(field, "expected an array");
                None
            }
        }
    }

    /// `true` (the only value a flag like `broadcast` may take).
    pub(crate) fn true_flag(&mut self, field: &str) -> bool {
        match self.take(field).map(|r| r.get()) {
            None => false,
            Some("true") => true,
            Some(_) => {
                self.fail(field, "must be true");
                false
            }
        }
    }

    /// An optional idempotency key: 1 to [`MAX_KEY_LEN`] visible ASCII characters.
    pub(crate) fn key_field(&mut self, field: &str) -> Option<String> {
        let raw = self.take(field)?;
        match serde_json::from_str::<String>(raw.get()) {
            Ok(key) if is_key(&key) => Some(key),
            _ => {
                self.fail(field, KEY_RULE);
                None
            }
        }
    }

    /// An optional integer from `min` to `max`.
    pub(crate) fn count_field(&mut self, field: &str, min: u32, max: u32) -> Option<u32> {
        let raw = self.take(field)?.get();
        match raw.parse::<u32>() {
            Ok(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                self.fail(field, &format!("must be an integer from {min} to {max}"));
                None
            }
        }
    }

    /// An optional boolean.
    pub(crate) fn bool_field(&mut self, field: &str) -> Option<bool> {
        match self.take(field).map(|r| r.get()) {
            None => None,
            Some("true") => Some(true),
            Some("false") => Some(false),
            Some(_) => {
                self.fail(field, "must be a boolean");
                None
            }
        }
    }

    /// Any JSON value (default `null`), at most 64 deep.
    pub(crate) fn data(&mut self, field: &str) -> Option<&'a RawValue> {
        let raw = self.take(field)?;
        match RawData::validate(Format::Json, raw.get().as_bytes()) {
            Ok(_) => Some(raw),
            Err(e) => {
                let msg = e.message.to_string();
                let msg = msg.strip_prefix("data: ").unwrap_or(&msg).to_owned();
                self.fail(field, &msg);
                None
            }
        }
    }

    /// Records every member no reader took as an unknown field; returns all details.
    pub(crate) fn finish(mut self) -> Vec<Detail> {
        for (i, (k, _)) in self.members.iter().enumerate() {
            if !self.used[i]
                && !self
                    .errors
                    .iter()
                    .any(|d| d.field == format!("{}{k}", self.prefix))
            {
                self.errors
                    .push(Detail::new(format!("{}{k}", self.prefix), "unknown field"));
            }
        }
        self.errors
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_invalid_field_is_reported() {
        let body = br#"{"roomId":"","event":5,"extra":1,"userIds":["a",2],"event":"x"}"#;
        let mut f = Fields::parse(body).unwrap();
        assert_eq!(f.name_field("roomId", true), None);
        assert_eq!(f.name_field("event", true), None);
        assert_eq!(f.name_list("userIds", 10), None);
        assert_eq!(f.name_field("createdBy", true), None);
        let fields: Vec<String> = f.finish().into_iter().map(|d| d.field).collect();
        for expected in ["event", "roomId", "userIds[1]", "createdBy", "extra"] {
            assert!(
                fields.iter().any(|f| f == expected),
                "{expected} in {fields:?}"
            );
        }
    }

    #[test]
    fn malformed_bodies_and_data_depth() {
        assert!(Fields::parse(b"[1]").is_err());
        assert!(Fields::parse(b"{").is_err());
        let deep = format!(r#"{{"data":{}{}}}"#, "[".repeat(70), "]".repeat(70));
        let mut f = Fields::parse(deep.as_bytes()).unwrap();
        assert!(f.data("data").is_none());
        assert_eq!(f.finish()[0].field, "data");
    }
}
