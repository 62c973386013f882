//! The Redis backend's plumbing: the pool's shared connection and key prefix, and the scripts,
//! each `lua/lib.lua` followed by one operation's file. Each concept module owns its scripts.

use callpool_pool::redis_store::SharedRedis;
use redis::{Script, Value};

use super::error::StoreError;

#[derive(Clone)]
pub(super) struct Db(SharedRedis);

/// Shared helpers prepended to every script: `k(...)` builds keys, and the job-queue functions
/// the writes of records use (`lua/lib.lua`).
const LIB: &str = include_str!("lua/lib.lua");

/// One operation's script, with the shared helpers before it.
pub(super) fn script(body: &str) -> Script {
    Script::new(&format!("{LIB}\n{body}"))
}

impl Db {
    pub fn new(shared: SharedRedis) -> Db {
        Db(shared)
    }

    pub fn key(&self, parts: &[&str]) -> String {
        self.0.key(parts)
    }

    pub async fn eval(&self, script: &Script, args: &[String]) -> Result<Value, StoreError> {
        self.0.eval(script, args).await.map_err(StoreError::redis)
    }

    pub async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, StoreError> {
        self.0.query(cmd).await.map_err(StoreError::redis)
    }

    pub async fn query_pipe<T: redis::FromRedisValue>(&self, pipe: &redis::Pipeline) -> Result<T, StoreError> {
        self.0.query_pipe(pipe).await.map_err(StoreError::redis)
    }
}

impl Db {
    /// Forgets up to `limit` records per site of `parts` that the index `P:<index>:S` lists before
    /// `before`, with their records `P:<record>:ID` and every trace of their jobs of `kinds`.
    pub async fn forget_records(
        &self,
        (index, record): (&str, &str),
        before: callpool_pool::Ts,
        limit: usize,
        kinds: &[&str],
        parts: Vec<String>,
    ) -> Result<usize, StoreError> {
        static FORGET: std::sync::LazyLock<Script> =
            std::sync::LazyLock::new(|| script(include_str!("lua/records_forget.lua")));
        let mut args = vec![index.to_owned(), record.to_owned(), before.as_millis().to_string(), limit.to_string()];
        list_args(&mut args, kinds);
        args.extend(parts);
        Ok(usize::try_from(int(self.eval(&FORGET, &args).await?, "records_forget")?).unwrap_or(0))
    }
}

/// The arguments of a Lua list: `n, {item}...`.
pub(super) fn list_args(args: &mut Vec<String>, items: &[&str]) {
    args.push(items.len().to_string());
    args.extend(items.iter().map(|s| (*s).to_owned()));
}

/// A Lua array of strings as byte strings (nil as empty).
pub(super) fn bulk_list(v: Value) -> Result<Vec<Vec<u8>>, StoreError> {
    match v {
        Value::Array(items) => items
            .into_iter()
            .map(|i| match i {
                Value::BulkString(b) => Ok(b),
                Value::SimpleString(s) => Ok(s.into_bytes()),
                Value::Nil => Ok(Vec::new()),
                other => Err(unexpected("an item", &other)),
            })
            .collect(),
        Value::Nil => Ok(Vec::new()),
        other => Err(unexpected("a list", &other)),
    }
}

/// A whole number from a script.
pub(super) fn int(v: Value, what: &str) -> Result<i64, StoreError> {
    match v {
        Value::Int(n) => Ok(n),
        other => Err(unexpected(what, &other)),
    }
}

pub(super) fn unexpected(what: &str, got: &Value) -> StoreError {
    StoreError::Failed(format!("unexpected answer from redis for {what}: {got:?}"))
}
