//! What the pool's scripts answer, read into the pool's types: leases, visits, grants.

use std::collections::HashMap;

use redis::Value;

use crate::rules::{Due, Grant};
use crate::types::{EndReason, Lease, LeaseId, PhoneNumber, SiteId, Ts, Visit, VisitorId};
use crate::PoolError;

pub(super) fn bad(what: &str) -> PoolError {
    PoolError::Storage(format!("unexpected answer from redis: {what}"))
}

pub(super) fn text(v: Value) -> Result<String, PoolError> {
    match v {
        Value::BulkString(b) => String::from_utf8(b).map_err(|_| bad("non-UTF-8 string")),
        Value::SimpleString(s) => Ok(s),
        Value::Int(i) => Ok(i.to_string()),
        Value::Okay => Ok("OK".into()),
        other => Err(bad(&format!("{other:?} where a string was expected"))),
    }
}

pub(super) fn array(v: Value) -> Result<Vec<Value>, PoolError> {
    match v {
        Value::Array(a) | Value::Set(a) => Ok(a),
        Value::Nil => Ok(Vec::new()),
        other => Err(bad(&format!("{other:?} where an array was expected"))),
    }
}

pub(super) fn int(s: &str, field: &str) -> Result<i64, PoolError> {
    s.parse().map_err(|_| bad(&format!("field {field} = {s:?} is not a whole number")))
}

/// A lease from the flat field/value array `HGETALL` gives.
pub(super) fn lease(v: Value) -> Result<Lease, PoolError> {
    let items = array(v)?;
    let mut f: HashMap<String, String> = HashMap::with_capacity(items.len() / 2);
    let mut it = items.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        f.insert(text(k)?, text(v)?);
    }
    let get = |name: &str| f.get(name).map(String::as_str).ok_or_else(|| bad(&format!("lease without {name}")));
    let ended = get("end")?;
    let reason = get("reason")?;
    Ok(Lease {
        id: LeaseId(int(get("id")?, "id")? as u64),
        site: SiteId::new(get("site")?)?,
        visitor: VisitorId::new(get("visitor")?)?,
        number: PhoneNumber::parse(get("number")?)?,
        attrs: serde_json::from_str(get("attrs")?).map_err(|e| bad(&format!("lease attrs: {e}")))?,
        started_at: Ts::from_millis(int(get("start")?, "start")?),
        expires_at: Ts::from_millis(int(get("exp")?, "exp")?),
        ended_at: if ended.is_empty() { None } else { Some(Ts::from_millis(int(ended, "end")?)) },
        end_reason: if reason.is_empty() {
            None
        } else {
            Some(EndReason::parse(reason).ok_or_else(|| bad(&format!("end reason {reason:?}")))?)
        },
        left: get("left")? == "1",
    })
}

pub(super) fn opt_lease(v: Value) -> Result<Option<Lease>, PoolError> {
    match &v {
        Value::Array(a) if a.is_empty() => Ok(None),
        Value::Nil => Ok(None),
        _ => lease(v).map(Some),
    }
}

/// The answer of `acquire` or `acquire_due`: `{'leased', fresh, lease}`, `{'exhausted'}`,
/// `{'later', due}`, `{'ended'}` or `{'unknown'}`.
pub(super) fn due_from(site: &SiteId, v: Value) -> Result<Due, PoolError> {
    let mut out = array(v)?.into_iter();
    let tag = text(out.next().ok_or_else(|| bad("empty acquire answer"))?)?;
    match tag.as_str() {
        "leased" => {
            let fresh = text(out.next().ok_or_else(|| bad("acquire without fresh"))?)? == "1";
            let lease = lease(out.next().ok_or_else(|| bad("acquire without lease"))?)?;
            Ok(Due::Granted(Grant::Leased { lease, fresh }))
        }
        "exhausted" => Ok(Due::Granted(Grant::Exhausted)),
        "later" => {
            Ok(Due::Later(Ts::from_millis(int(&text(out.next().ok_or_else(|| bad("later without due"))?)?, "due")?)))
        }
        "ended" => Ok(Due::Ended),
        "unknown" => Err(PoolError::UnknownSite(site.clone())),
        other => Err(bad(&format!("acquire answered {other:?}"))),
    }
}

/// A visit from `{first, last, ended}`; `None` from `{}` or `{'unknown'}`.
pub(super) fn visit_from(v: Vec<Value>) -> Result<Option<Visit>, PoolError> {
    let v: Vec<String> = v.into_iter().map(text).collect::<Result<_, _>>()?;
    let [first, last, ended] = v.as_slice() else { return Ok(None) };
    Ok(Some(Visit {
        first_seen: Ts::from_millis(int(first, "first")?),
        last_seen: Ts::from_millis(int(last, "last")?),
        ended_at: if ended.is_empty() { None } else { Some(Ts::from_millis(int(ended, "ended")?)) },
    }))
}
