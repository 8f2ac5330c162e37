//! The raw baselines, served from a process of their own: the same work a
//! validate or an activate answers with, minus everything keyledger adds.
//!
//! - `static`: parse a validate-shaped JSON body, answer with seed 001's
//!   signed shape (sorted `data`, Ed25519 signature), no storage.
//! - `select`: the same plus one primary-key SELECT, a naive
//!   database-backed validate.
//! - `insert`: the same plus one single-row INSERT of a random text key
//!   and a JSON payload, a naive database-backed write.
//! - `smallest-insert`: the same plus the smallest durable write: one row
//!   of a serial key and three short columns, the floor of a write.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use ed25519_dalek::{Signer, SigningKey};
use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    Static,
    Select,
    Insert,
    SmallestInsert,
}

impl Kind {
    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Static => "static",
            Kind::Select => "select",
            Kind::Insert => "insert",
            Kind::SmallestInsert => "smallest-insert",
        }
    }
}

struct Baseline {
    kind: Kind,
    key: SigningKey,
    db: Option<Db>,
}

enum Db {
    Postgres(sqlx::PgPool),
    Sqlite(sqlx::SqlitePool),
}

/// Rows the `select` baseline reads: as many as the scenario has licenses.
pub const ROWS: i64 = 10_000;

pub async fn serve(kind: Kind, listen: SocketAddr, database_url: Option<String>) {
    let db = match (&database_url, kind) {
        (_, Kind::Static) | (None, _) => None,
        (Some(url), _) => Some(prepare(url).await),
    };
    let state = Arc::new(Baseline { kind, key: SigningKey::from_bytes(&[7; 32]), db });
    let app = Router::new().route("/validate", post(answer)).with_state(state);
    let listener = tokio::net::TcpListener::bind(listen).await.expect("baseline listens");
    axum::serve(listener, app).await.expect("baseline serves");
}

async fn prepare(url: &str) -> Db {
    const CREATE_LICENSES: &str =
        "CREATE TABLE IF NOT EXISTS bench_licenses (id BIGINT PRIMARY KEY, payload TEXT NOT NULL)";
    const CREATE_WRITES: &str = "CREATE TABLE IF NOT EXISTS bench_writes (id TEXT PRIMARY KEY, payload TEXT NOT NULL)";
    const CREATE_SMALL_PG: &str =
        "CREATE TABLE IF NOT EXISTS bench_small_writes (id BIGSERIAL PRIMARY KEY, a TEXT NOT NULL, b TEXT NOT NULL, c TEXT NOT NULL)";
    const CREATE_SMALL_SQLITE: &str =
        "CREATE TABLE IF NOT EXISTS bench_small_writes (id INTEGER PRIMARY KEY, a TEXT NOT NULL, b TEXT NOT NULL, c TEXT NOT NULL)";
    let payload = json!({"expiresAt": "2027-04-22T10:00:00Z", "licenseType": 1, "maxConnections": 10}).to_string();
    if url.starts_with("postgres") {
        // Not pinged before each query, as keyledger's pool isn't: the
        // floor of a write is one round trip.
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(16)
            .test_before_acquire(false)
            .connect(url)
            .await
            .expect("connect");
        sqlx::query(CREATE_LICENSES).execute(&pool).await.unwrap();
        sqlx::query(CREATE_WRITES).execute(&pool).await.unwrap();
        sqlx::query(CREATE_SMALL_PG).execute(&pool).await.unwrap();
        sqlx::query("INSERT INTO bench_licenses SELECT g, $1 FROM generate_series(1, $2) g ON CONFLICT DO NOTHING")
            .bind(&payload)
            .bind(ROWS)
            .execute(&pool)
            .await
            .unwrap();
        Db::Postgres(pool)
    } else {
        let options = url
            .parse::<sqlx::sqlite::SqliteConnectOptions>()
            .expect("sqlite url")
            .create_if_missing(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
            .busy_timeout(std::time::Duration::from_secs(10));
        let pool = sqlx::sqlite::SqlitePoolOptions::new().max_connections(16).connect_with(options).await.unwrap();
        sqlx::query(CREATE_LICENSES).execute(&pool).await.unwrap();
        sqlx::query(CREATE_WRITES).execute(&pool).await.unwrap();
        sqlx::query(CREATE_SMALL_SQLITE).execute(&pool).await.unwrap();
        sqlx::query(
            "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < $2)
             INSERT OR IGNORE INTO bench_licenses SELECT n, $1 FROM g",
        )
        .bind(&payload)
        .bind(ROWS)
        .execute(&pool)
        .await
        .unwrap();
        Db::Sqlite(pool)
    }
}

async fn answer(State(baseline): State<Arc<Baseline>>, Json(body): Json<Value>) -> Json<Value> {
    let machine = body["machineId"].as_str().unwrap_or_default().to_owned();
    let row = body["row"].as_i64().unwrap_or(1);
    let payload = match (&baseline.db, baseline.kind) {
        (Some(Db::Postgres(pool)), Kind::Select) => select(pool, row).await,
        (Some(Db::Sqlite(pool)), Kind::Select) => select(pool, row).await,
        (Some(Db::Postgres(pool)), Kind::Insert) => insert(pool, &machine).await,
        (Some(Db::Sqlite(pool)), Kind::Insert) => insert(pool, &machine).await,
        (Some(Db::Postgres(pool)), Kind::SmallestInsert) => smallest_insert(pool, &machine).await,
        (Some(Db::Sqlite(pool)), Kind::SmallestInsert) => smallest_insert(pool, &machine).await,
        _ => json!({"expiresAt": "2027-04-22T10:00:00Z", "licenseType": 1, "maxConnections": 10}).to_string(),
    };
    let mut data: Value = serde_json::from_str(&payload).unwrap_or_default();
    data["isValid"] = json!(true);
    // serde_json sorts object keys, which is seed 001's signing rule.
    let signed = serde_json::to_vec(&data).unwrap_or_default();
    let signature = hex::encode(baseline.key.sign(&signed).to_bytes());
    Json(json!({ "data": data, "signature": signature }))
}

async fn select<'e, DB: sqlx::Database>(pool: &'e sqlx::Pool<DB>, row: i64) -> String
where
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    i64: for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    String: for<'r> sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    usize: sqlx::ColumnIndex<DB::Row>,
{
    let mut connection = pool.acquire().await.expect("connection");
    sqlx::query_scalar::<_, String>("SELECT payload FROM bench_licenses WHERE id = $1")
        .bind(row)
        .fetch_one(&mut *connection)
        .await
        .unwrap_or_default()
}

async fn insert<'e, DB: sqlx::Database>(pool: &'e sqlx::Pool<DB>, machine: &str) -> String
where
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
{
    let payload = json!({"expiresAt": "2027-04-22T10:00:00Z", "licenseType": 1, "maxConnections": 10}).to_string();
    let mut connection = pool.acquire().await.expect("connection");
    let _ = sqlx::query("INSERT INTO bench_writes (id, payload) VALUES ($1, $2)")
        .bind(machine.to_owned())
        .bind(payload.clone())
        .execute(&mut *connection)
        .await;
    payload
}

/// One row of a serial key and three short columns: nothing to check for
/// uniqueness but the key the database makes.
async fn smallest_insert<'e, DB: sqlx::Database>(pool: &'e sqlx::Pool<DB>, machine: &str) -> String
where
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
{
    let short: String = machine.chars().take(16).collect();
    let mut connection = pool.acquire().await.expect("connection");
    let _ = sqlx::query("INSERT INTO bench_small_writes (a, b, c) VALUES ($1, $2, $3)")
        .bind(short)
        .bind("1".to_owned())
        .bind("x".to_owned())
        .execute(&mut *connection)
        .await;
    json!({"expiresAt": "2027-04-22T10:00:00Z", "licenseType": 1, "maxConnections": 10}).to_string()
}
