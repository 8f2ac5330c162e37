//! `license_view`: every license's current state, found by id, by key or
//! by owner.

use std::collections::HashMap;
use std::sync::LazyLock;

use chrono::{DateTime, SecondsFormat, Utc};
use keyledger_domain::{License, LicenseKey};
use keyledger_eventlog::{
    on_pool, write_turn, Cursor, Database, ProjectedRow, SqlValue, SAVE_CHECKPOINT_SQL, SNAPSHOT_FORMAT,
};

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error("read model query failed")]
    Query(#[from] sqlx::Error),
    #[error("read model row for license {license_id} does not decode")]
    Corrupt {
        license_id: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("license {0} has no key; only generated licenses can be projected")]
    NotGenerated(String),
}

/// A license as of `version`, the sequence of its last applied event.
#[derive(Debug, Clone)]
pub struct LicenseView {
    pub version: i64,
    pub license: License,
    /// The chain hash of event `version`, when the row's writer knew it
    /// (every writer since migration 0010 does).
    pub last_hash: Option<String>,
}

/// A license to record as of `version`, with the chain hash of that event.
pub type Versioned<'a> = (&'a License, i64, Option<&'a str>);

#[derive(Debug, Clone)]
pub struct LicenseViews {
    db: Database,
}

const INSERT_INTO: &str = "INSERT INTO license_view (license_id, tenant_id, owner_id, license_key, version, created_at, expires_at, expiry_recorded, state, last_hash, state_format, cull_at, customer_id, number, deleted)";

/// The columns an upsert sets on a row already there (all but the id and
/// the columns fixed at generation).
const SET_COLUMNS: [&str; 12] = [
    "owner_id",
    "license_key",
    "version",
    "expires_at",
    "expiry_recorded",
    "state",
    "last_hash",
    "state_format",
    "cull_at",
    "customer_id",
    "number",
    "deleted",
];

/// The columns of [`SET_COLUMNS`] that one of SQLite's indexes on
/// `license_view` covers, in its key or its `WHERE`. SQLite rewrites an
/// index's entry for every updated row whose `SET` names one of the
/// index's columns, whether or not the value changed; a rebuild that finds
/// them equal leaves them out (see [`Replacing::OutsideIndexes`]).
/// [`ViewRow::indexed_value`] gives each one's value.
const INDEXED_SET_COLUMNS: [&str; 7] =
    ["owner_id", "license_key", "expires_at", "expiry_recorded", "cull_at", "customer_id", "number"];

/// Which stored rows an upsert replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Replacing {
    /// Only older versions: a live update, where a concurrent writer's
    /// newer state wins.
    Older,
    /// Older versions, and the same version where any column it sets
    /// differs: a rebuild, which so mends a damaged row, while a row that
    /// is already right is not written at all (no page in SQLite's
    /// write-ahead log, no dead tuple in PostgreSQL).
    OlderOrDiffering,
    /// As `OlderOrDiffering`, setting only the columns no index covers:
    /// for rows whose indexed columns are known to be equal already, as a
    /// SQLite rebuild finds by reading them first. Each such row then
    /// costs its table page, not also a page of each of six indexes.
    OutsideIndexes,
}

impl Replacing {
    /// The `ON CONFLICT` clause, written once per kind (the append path
    /// takes one with every write).
    fn on_conflict(self) -> &'static str {
        static CLAUSES: LazyLock<[String; 3]> = LazyLock::new(|| {
            [Replacing::Older.clause(), Replacing::OlderOrDiffering.clause(), Replacing::OutsideIndexes.clause()]
        });
        &CLAUSES[self as usize]
    }

    /// The columns of [`SET_COLUMNS`] this kind sets, set where the
    /// stored row is to be replaced.
    fn clause(self) -> String {
        let columns: Vec<&str> = match self {
            Replacing::Older | Replacing::OlderOrDiffering => SET_COLUMNS.to_vec(),
            Replacing::OutsideIndexes => {
                SET_COLUMNS.into_iter().filter(|column| !INDEXED_SET_COLUMNS.contains(column)).collect()
            }
        };
        let set: Vec<String> = columns.iter().map(|column| format!("{column} = excluded.{column}")).collect();
        let older = "license_view.version < excluded.version";
        let condition = match self {
            Replacing::Older => older.to_owned(),
            Replacing::OlderOrDiffering | Replacing::OutsideIndexes => {
                let differing: Vec<String> = columns
                    .iter()
                    .map(|column| format!("license_view.{column} IS DISTINCT FROM excluded.{column}"))
                    .collect();
                format!("{older} OR (license_view.version = excluded.version AND ({}))", differing.join(" OR "))
            }
        };
        format!("ON CONFLICT (license_id) DO UPDATE SET {} WHERE {condition}", set.join(", "))
    }
}

/// Rows per multi-row upsert on PostgreSQL: 15 parameters each, well under
/// its limit on parameters in one statement. SQLite runs a prepared
/// statement as cheaply as a bigger one, and looks its parameters up by
/// position one at a time, so it gets few rows per statement.
const ROWS_PER_STATEMENT: usize = 200;
const SQLITE_ROWS_PER_STATEMENT: usize = 8;
/// Rows a rebuild writes a transaction.
const ROWS_PER_TRANSACTION: usize = 2_000;

impl LicenseViews {
    fn rows_per_statement(&self) -> usize {
        match self.db {
            Database::Postgres(_) => ROWS_PER_STATEMENT,
            Database::Sqlite(_) => SQLITE_ROWS_PER_STATEMENT,
        }
    }
}

/// An upsert of `rows` rows, replacing what `replacing` says.
fn multi_row_upsert(rows: usize, replacing: Replacing) -> String {
    let values: Vec<String> = (0..rows)
        .map(|row| {
            let first = row * COLUMN_COUNT;
            let placeholders: Vec<String> = (1..=COLUMN_COUNT).map(|column| format!("${}", first + column)).collect();
            format!("({})", placeholders.join(", "))
        })
        .collect();
    format!("{INSERT_INTO} VALUES {} {}", values.join(", "), replacing.on_conflict())
}

const COLUMNS: &str = "SELECT license_id, version, state, last_hash, state_format FROM license_view";

/// Columns of [`INSERT_INTO`].
const COLUMN_COUNT: usize = 15;

impl LicenseViews {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// Records `license` as of `version` unless a newer version is already
    /// there.
    pub async fn apply(&self, license: &License, version: i64, last_hash: Option<&str>) -> Result<(), ProjectionError> {
        self.upsert((license, version, last_hash), Replacing::Older).await
    }

    /// Records `license` as of `version`, overwriting a row of the same
    /// version: for rebuilding from the log.
    pub async fn rewrite(
        &self,
        license: &License,
        version: i64,
        last_hash: Option<&str>,
    ) -> Result<(), ProjectionError> {
        self.upsert((license, version, last_hash), Replacing::OlderOrDiffering).await
    }

    async fn upsert(&self, license: Versioned<'_>, replacing: Replacing) -> Result<(), ProjectionError> {
        let row = ViewRow::new(license)?;
        let sql = multi_row_upsert(1, replacing);
        let _turn = write_turn(&self.db).await;
        on_pool!(&self.db, pool => row.bind(sqlx::query(&sql)).execute(pool).await.map(drop))?;
        Ok(())
    }

    /// Records several licenses and moves consumer `consumer`'s checkpoint
    /// to `cursor`, in one transaction: a runner that dies half-way leaves
    /// neither, and repeats the batch.
    pub async fn apply_batch(
        &self,
        licenses: &[Versioned<'_>],
        consumer: &str,
        cursor: Cursor,
    ) -> Result<(), ProjectionError> {
        let rows = sorted_rows(licenses)?;
        let now = sortable_instant(Utc::now());
        let _turn = write_turn(&self.db).await;
        on_pool!(&self.db, pool => {
            let mut tx = pool.begin().await?;
            self.upsert_rows(&mut tx, &rows, Replacing::Older).await?;
            sqlx::query(SAVE_CHECKPOINT_SQL)
                .bind(consumer)
                .bind(cursor.txid)
                .bind(cursor.position)
                .bind(&now)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Records every license as of its version, overwriting rows of the
    /// same version, a few thousand rows a transaction: for a rebuild.
    pub async fn rewrite_all(&self, licenses: &[Versioned<'_>]) -> Result<(), ProjectionError> {
        match &self.db {
            Database::Postgres(pool) => {
                let mut connection = pool.acquire().await?;
                self.rewrite_on_postgres(&mut connection, licenses).await
            }
            Database::Sqlite(pool) => {
                // This process's other writers wait for the whole rewrite;
                // the turn comes before the connection, so no waiter holds
                // one.
                let _turn = write_turn(&self.db).await;
                // Rewriting every row through SQLite's default 2 MiB page
                // cache spills and re-reads pages all the way; this one
                // connection gets 64 MiB while it does, and gives it back.
                let mut connection = pool.acquire().await?;
                sqlx::query("PRAGMA cache_size = -65536").execute(&mut *connection).await?;
                let rewritten = self.rewrite_on_sqlite(&mut connection, licenses).await;
                sqlx::query("PRAGMA cache_size = -2000").execute(&mut *connection).await?;
                rewritten
            }
        }
    }

    /// Upserts `licenses` [`ROWS_PER_TRANSACTION`] rows a transaction,
    /// setting every column where one differs (PostgreSQL compares indexed
    /// columns' values itself, and touches no index where none changed).
    async fn rewrite_on_postgres(
        &self,
        connection: &mut sqlx::pool::PoolConnection<sqlx::Postgres>,
        licenses: &[Versioned<'_>],
    ) -> Result<(), ProjectionError> {
        use sqlx::Connection;
        let rows = sorted_rows(licenses)?;
        for rows in rows.chunks(ROWS_PER_TRANSACTION) {
            let mut tx = connection.begin().await?;
            self.upsert_rows(&mut tx, rows, Replacing::OlderOrDiffering).await?;
            tx.commit().await?;
        }
        Ok(())
    }

    /// As [`Self::rewrite_on_postgres`], for SQLite: each batch first reads the
    /// stored rows' indexed columns, and the rows where those are equal
    /// (in a rebuild, nearly all) are upserted setting the other columns
    /// only ([`Replacing::OutsideIndexes`]). The read and the writes share
    /// a transaction, so what was read is what the writes meet.
    async fn rewrite_on_sqlite(
        &self,
        connection: &mut sqlx::pool::PoolConnection<sqlx::Sqlite>,
        licenses: &[Versioned<'_>],
    ) -> Result<(), ProjectionError> {
        use sqlx::{Connection, Row};
        let mut rows = sorted_rows(licenses)?;
        let select = format!(
            "SELECT license_id, {} FROM license_view WHERE license_id BETWEEN $1 AND $2",
            INDEXED_SET_COLUMNS.join(", ")
        );
        while !rows.is_empty() {
            let batch: Vec<ViewRow> = rows.drain(..rows.len().min(ROWS_PER_TRANSACTION)).collect();
            let (first, last) = (&batch[0].license_id, &batch[batch.len() - 1].license_id);
            // IMMEDIATE: the write lock before the read, so no other
            // process commits between them (a deferred transaction's first
            // write would then fail with SQLITE_BUSY_SNAPSHOT, not wait).
            let mut tx = connection.begin_with("BEGIN IMMEDIATE").await?;
            let stored: HashMap<String, sqlx::sqlite::SqliteRow> = sqlx::query(&select)
                .bind(first)
                .bind(last)
                .fetch_all(&mut *tx)
                .await?
                .into_iter()
                .map(|row| Ok((row.try_get("license_id")?, row)))
                .collect::<Result<_, sqlx::Error>>()?;
            let mut unchanged = Vec::with_capacity(batch.len());
            let mut changed = Vec::new();
            for row in batch {
                let equal = match stored.get(&row.license_id) {
                    Some(held) => row.indexed_equal(held)?,
                    None => false,
                };
                if equal {
                    unchanged.push(row)
                } else {
                    changed.push(row)
                }
            }
            self.upsert_rows(&mut tx, &unchanged, Replacing::OutsideIndexes).await?;
            self.upsert_rows(&mut tx, &changed, Replacing::OlderOrDiffering).await?;
            tx.commit().await?;
        }
        Ok(())
    }

    /// Upserts `rows` in `tx`, a multi-row statement at a time, replacing
    /// what `replacing` says.
    async fn upsert_rows<DB>(
        &self,
        tx: &mut sqlx::Transaction<'_, DB>,
        rows: &[ViewRow],
        replacing: Replacing,
    ) -> Result<(), ProjectionError>
    where
        DB: sqlx::Database,
        for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
        for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
        for<'q> Option<&'q str>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
        for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
        for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    {
        for chunk in rows.chunks(self.rows_per_statement()) {
            let sql = multi_row_upsert(chunk.len(), replacing);
            chunk.iter().fold(sqlx::query(&sql), |query, row| row.bind(query)).execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// The stored version of each of these licenses that has a row.
    pub async fn versions(&self, license_ids: &[&str]) -> Result<HashMap<String, i64>, ProjectionError> {
        let ids = serde_json::to_string(license_ids).expect("strings serialise");
        let rows: Vec<(String, i64)> = match &self.db {
            Database::Postgres(pool) => {
                const SQL: &str = "SELECT license_id, version FROM license_view
                                    WHERE license_id IN (SELECT json_array_elements_text($1::text::json))";
                sqlx::query_as(SQL).bind(ids).fetch_all(pool).await?
            }
            Database::Sqlite(pool) => {
                const SQL: &str =
                    "SELECT license_id, version FROM license_view WHERE license_id IN (SELECT value FROM json_each($1))";
                sqlx::query_as(SQL).bind(ids).fetch_all(pool).await?
            }
        };
        Ok(rows.into_iter().collect())
    }

    /// `license`'s row as of `version`, for writing in the transaction that
    /// appends the events it reflects (see [`EventLog::append_after`]).
    ///
    /// [`EventLog::append_after`]: keyledger_eventlog::EventLog::append_after
    pub fn projected_row(license: &License, version: i64) -> Result<ProjectedRow, ProjectionError> {
        let row = ViewRow::new((license, version, None))?;
        Ok(ProjectedRow {
            insert_into: INSERT_INTO,
            values: vec![
                SqlValue::Text(row.license_id),
                SqlValue::Text(row.tenant_id),
                SqlValue::Text(row.owner_id),
                SqlValue::Text(row.license_key),
                SqlValue::Int(row.version),
                SqlValue::Text(row.created_at),
                SqlValue::Text(row.expires_at),
                SqlValue::Int(row.expiry_recorded),
                SqlValue::Text(row.state),
                SqlValue::AppendedHash,
                SqlValue::Int(SNAPSHOT_FORMAT),
                SqlValue::Text(row.cull_at),
                SqlValue::Text(row.customer_id),
                SqlValue::Int(row.number),
                SqlValue::Int(row.deleted),
            ],
            on_conflict: Replacing::Older.on_conflict().to_owned(),
        })
    }

    pub async fn by_id(&self, license_id: &str) -> Result<Option<LicenseView>, ProjectionError> {
        let sql = format!("{COLUMNS} WHERE license_id = $1");
        self.fetch_one(&sql, license_id).await
    }

    pub async fn by_key(&self, key: &LicenseKey) -> Result<Option<LicenseView>, ProjectionError> {
        let sql = format!("{COLUMNS} WHERE license_key = $1");
        self.fetch_one(&sql, key.as_str()).await
    }

    /// An owner's licenses, oldest first.
    pub async fn by_owner(&self, tenant_id: &str, owner_id: &str) -> Result<Vec<LicenseView>, ProjectionError> {
        let sql =
            format!("{COLUMNS} WHERE tenant_id = $1 AND owner_id = $2 AND deleted = 0 ORDER BY created_at, license_id");
        let rows: Vec<Row> = on_pool!(&self.db, pool => sqlx::query_as(&sql)
            .bind(tenant_id)
            .bind(owner_id)
            .fetch_all(pool)
            .await)?;
        rows.into_iter().map(decode).collect()
    }

    /// Every row after license id `after` (by id), `limit` at a time: for
    /// loading the whole model without holding it twice.
    pub async fn page(&self, after: &str, limit: i64) -> Result<Vec<LicenseView>, ProjectionError> {
        let sql = format!("{COLUMNS} WHERE license_id > $1 ORDER BY license_id LIMIT $2");
        let rows: Vec<Row> =
            on_pool!(&self.db, pool => sqlx::query_as(&sql).bind(after).bind(limit).fetch_all(pool).await)?;
        rows.into_iter().map(decode).collect()
    }

    /// The tenant's license with per-tenant serial `number`, deleted ones
    /// too (the caller decides what a deleted license is to it).
    pub async fn by_number(&self, tenant_id: &str, number: i64) -> Result<Option<LicenseView>, ProjectionError> {
        let sql = format!("{COLUMNS} WHERE tenant_id = $1 AND number = $2 AND number > 0");
        let row: Option<Row> =
            on_pool!(&self.db, pool => sqlx::query_as(&sql).bind(tenant_id).bind(number).fetch_optional(pool).await)?;
        row.map(decode).transpose()
    }

    /// A tenant's live (not deleted) licenses, oldest first, `limit` at a
    /// time; `after` is the last license id of the previous page.
    pub async fn by_tenant(
        &self,
        tenant_id: &str,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<LicenseView>, ProjectionError> {
        self.tenant_page(tenant_id, "$4 = ''", "", after, limit).await
    }

    /// A customer's licenses, paged like [`Self::by_tenant`].
    pub async fn by_customer(
        &self,
        tenant_id: &str,
        customer_id: &str,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<LicenseView>, ProjectionError> {
        self.tenant_page(tenant_id, "customer_id = $4", customer_id, after, limit).await
    }

    /// A page of a tenant's licenses that pass `filter` (binding `$4`).
    async fn tenant_page(
        &self,
        tenant_id: &str,
        filter: &str,
        filter_value: &str,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<LicenseView>, ProjectionError> {
        let sql = format!(
            "{COLUMNS} WHERE tenant_id = $1 AND deleted = 0 AND {filter}
               AND ($2 = '' OR (created_at, license_id) > (SELECT created_at, license_id FROM license_view WHERE license_id = $2))
             ORDER BY created_at, license_id LIMIT $3"
        );
        let rows: Vec<Row> = on_pool!(&self.db, pool => sqlx::query_as(&sql)
            .bind(tenant_id)
            .bind(after.unwrap_or_default())
            .bind(limit)
            .bind(filter_value)
            .fetch_all(pool)
            .await)?;
        rows.into_iter().map(decode).collect()
    }

    /// Up to `limit` licenses past their expiry at `now` with no
    /// `LicenseExpired` event yet (a license without an expiry has an
    /// empty `expires_at`, which sorts first and is never due), as (license id, tenant id), oldest expiry
    /// first.
    pub async fn due_for_expiry(
        &self,
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<(String, String)>, ProjectionError> {
        const SQL: &str = "SELECT license_id, tenant_id FROM license_view WHERE expiry_recorded = 0 AND expires_at <> '' AND expires_at <= $1 AND deleted = 0 ORDER BY expires_at LIMIT $2";
        self.due(SQL, now, limit).await
    }

    /// Up to `limit` licenses with a device dead at `now` (see migration
    /// 0011), as (license id, tenant id), the longest dead first.
    pub async fn due_for_culling(
        &self,
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<(String, String)>, ProjectionError> {
        const SQL: &str = "SELECT license_id, tenant_id FROM license_view WHERE cull_at <> '' AND cull_at <= $1 AND deleted = 0 ORDER BY cull_at LIMIT $2";
        self.due(SQL, now, limit).await
    }

    /// (license id, tenant id) of the rows `sql` finds due at `$1` = `now`,
    /// at most `$2` = `limit`.
    async fn due(&self, sql: &str, now: DateTime<Utc>, limit: i64) -> Result<Vec<(String, String)>, ProjectionError> {
        let due = on_pool!(&self.db, pool => sqlx::query_as(sql)
            .bind(sortable_instant(now))
            .bind(limit)
            .fetch_all(pool)
            .await)?;
        Ok(due)
    }

    /// Licenses whose row is missing or older than their last event: what a
    /// crash between appending events and updating this model leaves behind.
    pub async fn stale_license_ids(&self) -> Result<Vec<String>, ProjectionError> {
        const SQL: &str = "
SELECT e.aggregate_id
  FROM events e LEFT JOIN license_view v ON v.license_id = e.aggregate_id
 WHERE e.aggregate_type = 'License'
 GROUP BY e.aggregate_id, v.version
HAVING v.version IS NULL OR MAX(e.sequence) > v.version";
        let ids: Vec<String> = on_pool!(&self.db, pool => sqlx::query_scalar(SQL).fetch_all(pool).await)?;
        Ok(ids)
    }

    /// Rows folded under older rules than today's (`state_format` below
    /// [`SNAPSHOT_FORMAT`], or written before it was recorded): read
    /// fine, but missing what today's fold keeps, until re-folded.
    pub async fn outdated_count(&self) -> Result<i64, ProjectionError> {
        const SQL: &str = "SELECT COUNT(*) FROM license_view WHERE state_format IS NULL OR state_format <> $1";
        let count: i64 =
            on_pool!(&self.db, pool => sqlx::query_scalar(SQL).bind(SNAPSHOT_FORMAT).fetch_one(pool).await)?;
        Ok(count)
    }

    /// Removes rows of licenses that have no events (there should be none).
    pub async fn remove_orphans(&self) -> Result<(), ProjectionError> {
        // NOT EXISTS, an anti-join on the events' key: PostgreSQL runs a
        // NOT IN over more ids than fit its work_mem row by row.
        const SQL: &str = "DELETE FROM license_view WHERE NOT EXISTS
            (SELECT 1 FROM events WHERE aggregate_type = 'License' AND aggregate_id = license_view.license_id)";
        on_pool!(&self.db, pool => sqlx::query(SQL).execute(pool).await.map(drop))?;
        Ok(())
    }

    async fn fetch_one(&self, sql: &str, value: &str) -> Result<Option<LicenseView>, ProjectionError> {
        let row: Option<Row> = on_pool!(&self.db, pool => sqlx::query_as(sql).bind(value).fetch_optional(pool).await)?;
        row.map(decode).transpose()
    }
}

/// Rows in license id order: two transactions writing overlapping rows
/// (the runner and a rebuild) then lock them in the same order and can't
/// deadlock each other.
fn sorted_rows(licenses: &[Versioned<'_>]) -> Result<Vec<ViewRow>, ProjectionError> {
    let mut rows = licenses.iter().map(|license| ViewRow::new(*license)).collect::<Result<Vec<_>, _>>()?;
    rows.sort_unstable_by(|a, b| a.license_id.cmp(&b.license_id));
    Ok(rows)
}

/// The columns of one `license_view` row, in `INSERT_INTO`'s order.
struct ViewRow {
    license_id: String,
    tenant_id: String,
    owner_id: String,
    license_key: String,
    version: i64,
    created_at: String,
    expires_at: String,
    expiry_recorded: i64,
    state: String,
    /// See migration 0011: empty when no device can die.
    cull_at: String,
    /// See migration 0014: empty when none is named.
    customer_id: String,
    /// See migration 0020: 0 for a license made before numbers.
    number: i64,
    deleted: i64,
    last_hash: Option<String>,
}

/// The value of one of [`INDEXED_SET_COLUMNS`] in a [`ViewRow`].
#[derive(Debug, PartialEq, Eq)]
enum IndexedValue<'a> {
    Text(&'a str),
    Int(i64),
}

impl ViewRow {
    /// This row's value of `column`, one of [`INDEXED_SET_COLUMNS`]. Named,
    /// not by position, so a column added to that list without a value
    /// here fails the unit tests rather than going uncompared.
    fn indexed_value(&self, column: &str) -> IndexedValue<'_> {
        match column {
            "owner_id" => IndexedValue::Text(&self.owner_id),
            "license_key" => IndexedValue::Text(&self.license_key),
            "expires_at" => IndexedValue::Text(&self.expires_at),
            "expiry_recorded" => IndexedValue::Int(self.expiry_recorded),
            "cull_at" => IndexedValue::Text(&self.cull_at),
            "customer_id" => IndexedValue::Text(&self.customer_id),
            "number" => IndexedValue::Int(self.number),
            other => unreachable!("{other} is not an indexed column a rebuild compares"),
        }
    }

    /// Whether `stored`, a row selected with [`INDEXED_SET_COLUMNS`],
    /// holds this row's values of them.
    fn indexed_equal(&self, stored: &sqlx::sqlite::SqliteRow) -> Result<bool, sqlx::Error> {
        use sqlx::Row;
        for column in INDEXED_SET_COLUMNS {
            let equal = match self.indexed_value(column) {
                IndexedValue::Text(value) => stored.try_get::<&str, _>(column)? == value,
                IndexedValue::Int(value) => stored.try_get::<i64, _>(column)? == value,
            };
            if !equal {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn new((license, version, last_hash): Versioned<'_>) -> Result<Self, ProjectionError> {
        let key = license.license_key.as_ref().ok_or_else(|| ProjectionError::NotGenerated(license.id.to_string()))?;
        let state = serde_json::to_string(license)
            .map_err(|source| ProjectionError::Corrupt { license_id: license.id.to_string(), source })?;
        Ok(Self {
            license_id: license.id.to_string(),
            tenant_id: license.tenant_id.to_string(),
            owner_id: license.owner_id.to_string(),
            license_key: key.as_str().to_owned(),
            version,
            created_at: license.created_at.map(sortable_instant).unwrap_or_default(),
            expires_at: license.expires_at.map(sortable_instant).unwrap_or_default(),
            expiry_recorded: i64::from(license.expiry_recorded()),
            cull_at: license.next_death().map(sortable_instant).unwrap_or_default(),
            customer_id: license.customer_id.clone().unwrap_or_default().to_string(),
            number: license.number.unwrap_or_default(),
            deleted: i64::from(license.deleted),
            state,
            last_hash: last_hash.map(str::to_owned),
        })
    }

    fn bind<'q, DB: sqlx::Database>(
        &'q self,
        query: sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>,
    ) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>
    where
        &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
        Option<&'q str>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
        i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    {
        query
            .bind(self.license_id.as_str())
            .bind(self.tenant_id.as_str())
            .bind(self.owner_id.as_str())
            .bind(self.license_key.as_str())
            .bind(self.version)
            .bind(self.created_at.as_str())
            .bind(self.expires_at.as_str())
            .bind(self.expiry_recorded)
            .bind(self.state.as_str())
            .bind(self.last_hash.as_deref())
            .bind(SNAPSHOT_FORMAT)
            .bind(self.cull_at.as_str())
            .bind(self.customer_id.as_str())
            .bind(self.number)
            .bind(self.deleted)
    }
}

/// RFC 3339 in UTC with a fixed number of digits, so that comparing the
/// text compares the instants (for years up to 9999).
fn sortable_instant(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// A row as selected by [`COLUMNS`].
type Row = (String, i64, String, Option<String>, Option<i64>);

fn decode((license_id, version, state, last_hash, format): Row) -> Result<LicenseView, ProjectionError> {
    let license = serde_json::from_str(&state).map_err(|source| ProjectionError::Corrupt { license_id, source })?;
    // A state folded under older rules is fine to read, not to decide on.
    let last_hash = last_hash.filter(|_| format == Some(SNAPSHOT_FORMAT));
    Ok(LicenseView { version, license, last_hash })
}

#[cfg(test)]
mod tests {
    use keyledger_eventlog::Database;

    use super::{ViewRow, INDEXED_SET_COLUMNS, SET_COLUMNS};

    /// Every column an upsert sets that one of `license_view`'s indexes
    /// covers, in its key or its `WHERE`, in the schema the SQLite
    /// migrations make.
    async fn indexed_in_the_schema() -> Vec<&'static str> {
        let db = Database::connect("sqlite::memory:", 1).await.expect("an in-memory database");
        db.migrate().await.expect("the migrations run");
        let Database::Sqlite(pool) = db else { unreachable!("a SQLite URL") };
        let indexes: Vec<String> = sqlx::query_scalar("SELECT name FROM pragma_index_list('license_view')")
            .fetch_all(&pool)
            .await
            .expect("the view's indexes");
        assert!(indexes.len() >= 7, "the view's indexes are found: {indexes:?}");
        let mut covered = Vec::new();
        for index in &indexes {
            let keys: Vec<Option<String>> = sqlx::query_scalar("SELECT name FROM pragma_index_info($1)")
                .bind(index)
                .fetch_all(&pool)
                .await
                .unwrap();
            assert!(keys.iter().all(Option::is_some), "{index} indexes an expression, which this test does not read");
            covered.extend(keys.into_iter().flatten());
            // A partial index's WHERE is in its SQL (an index made for a
            // UNIQUE or PRIMARY KEY constraint has none).
            let sql: Option<String> =
                sqlx::query_scalar("SELECT sql FROM sqlite_master WHERE type = 'index' AND name = $1")
                    .bind(index)
                    .fetch_one(&pool)
                    .await
                    .unwrap();
            let sql = sql.unwrap_or_default().to_lowercase();
            if let Some((_, filter)) = sql.split_once(" where ") {
                let words = filter.split(|c: char| !(c.is_alphanumeric() || c == '_'));
                covered.extend(words.map(str::to_owned));
            }
        }
        SET_COLUMNS.into_iter().filter(|column| covered.iter().any(|c| c == column)).collect()
    }

    #[tokio::test]
    async fn the_columns_left_out_of_a_rebuilds_narrow_upsert_are_those_the_indexes_cover() {
        let mut indexed = INDEXED_SET_COLUMNS.to_vec();
        indexed.sort_unstable();
        let mut found = indexed_in_the_schema().await;
        found.sort_unstable();
        assert_eq!(indexed, found);
    }

    #[test]
    fn every_indexed_column_has_a_value_to_compare() {
        let row = ViewRow {
            license_id: "l".into(),
            tenant_id: "t".into(),
            owner_id: "o".into(),
            license_key: "k".into(),
            version: 1,
            created_at: String::new(),
            expires_at: String::new(),
            expiry_recorded: 0,
            state: "{}".into(),
            cull_at: String::new(),
            customer_id: String::new(),
            number: 0,
            deleted: 0,
            last_hash: None,
        };
        for column in INDEXED_SET_COLUMNS {
            row.indexed_value(column); // panics for a column it does not know
        }
    }
}
